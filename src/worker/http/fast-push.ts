import type http from "node:http";
import type { Logger } from "pino";
import type { Config } from "../../shared/config.js";
import { requestIdFor, writeHttpError } from "../../shared/http-error.js";
import { setApiSecurityHeaders } from "../../shared/security-headers.js";
import type { PushGate } from "../protection/http-guard.js";
import type { PushResult, PushService } from "../push/push-service.js";
import { gatewayErrorOf } from "./express-errors.js";
import { requestRecorder } from "./request-log.js";
import { invalidJson, invalidRequest, parseRequest, type Schemas } from "./schemas.js";

/**
 * `POST /api/push` without express, the call a backend makes thousands of
 * times a second. Express's router, body-parser and response helpers cost
 * more CPU per push than the push itself (bench/RESULTS.md).
 *
 * It takes a request only when every precondition can be checked before the
 * body is read: the exact path, a valid API key, a JSON body of a declared
 * length within the limit, no content-encoding, not draining. Anything else
 * returns false and goes to the express app, which answers every error. What
 * it does then is what the express stack does, in the same order and with the
 * same parts: push admission (shedding, rate limit), JSON parsing, the body's
 * shape check, the push schema, the push service, the same headers, metrics
 * (with the same route labels) and log line.
 */

const ROUTE = "/api/push";
/** Labelled like express's requests that were refused before the route matched. */
const BEFORE_ROUTE = "middleware";
const JSON_TYPE = /^application\/json\s*(;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;

/** body-parser (iconv) drops a UTF-8 byte order mark; so does this. */
const stripBom = (text: string) => (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);

export interface FastPushDeps {
  cfg: Config;
  log: Logger;
  push: PushService;
  gate: PushGate;
  schema: Schemas["pushRequest"];
  /** The key id of a valid `Authorization: Bearer` header. */
  identify(authorization: unknown): string | undefined;
}

/** Returns a handler that answers the request and returns true, or returns false. */
export function createFastPush(deps: FastPushDeps) {
  const { cfg, log, gate } = deps;
  const record = requestRecorder(log);

  function takes(req: http.IncomingMessage): string | undefined {
    if (req.method !== "POST" || req.url !== ROUTE) return undefined;
    const h = req.headers;
    if (h["transfer-encoding"] !== undefined || h["content-encoding"] !== undefined) return;
    const length = Number(h["content-length"]);
    if (!(length > 0 && length <= cfg.PUSH_BODY_LIMIT_BYTES)) return;
    if (h["content-type"] === undefined || !JSON_TYPE.test(h["content-type"])) return;
    if (gate.draining()) return;
    return deps.identify(h.authorization);
  }

  return (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    const keyId = takes(req);
    if (keyId === undefined) return false;

    const started = process.hrtime.bigint();
    const requestId = requestIdFor(req.headers["x-request-id"]);
    let route = BEFORE_ROUTE;
    gate.track(res);
    res.setHeader("x-request-id", requestId);
    setApiSecurityHeaders(res);
    res.setHeader("cache-control", "no-store");
    res.once("finish", () => {
      record({
        requestId,
        method: "POST",
        route,
        path: ROUTE,
        status: res.statusCode,
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
      });
    });

    const answer = (result: PushResult) => {
      const json = JSON.stringify(result);
      res.writeHead(202, {
        "content-type": "application/json; charset=utf-8",
        "content-length": Buffer.byteLength(json),
      });
      res.end(json);
    };
    const failed = (err: unknown) => {
      const e = gatewayErrorOf(err, log, { path: ROUTE, requestId });
      if (e)
        writeHttpError(req, res, e.code, e.message, {
          details: e.details,
          retryAfter: e.retryAfter,
        });
    };

    // What express.json(), the guard's inspectBody and the route do, in order.
    const pushBody = async (raw: Buffer): Promise<PushResult> => {
      let body: unknown;
      try {
        body = JSON.parse(stripBom(raw.toString("utf8")));
      } catch {
        throw invalidJson();
      }
      const problem = gate.inspect(body);
      if (problem) throw invalidRequest([problem]);
      route = ROUTE;
      return deps.push.push(parseRequest(deps.schema, body));
    };

    gate.admitPush(keyId).then((refusal) => {
      if (refusal) return failed(refusal);
      // The parser stops at the declared length, which is within the limit.
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.once("end", () => {
        pushBody(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).then(answer, failed);
      });
    }, failed);
    return true;
  };
}
