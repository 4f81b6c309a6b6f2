import type http from "node:http";
import type { NextFunction, Request, Response } from "express";
import type { Config } from "../../shared/config.js";
import { GatewayError } from "../../shared/errors.js";
import { metrics } from "../../shared/metrics.js";
import { sendError } from "../http/express-errors.js";
import { invalidRequest } from "../http/schemas.js";
import { inspectJson, type JsonProblem } from "./inspect-json.js";
import type { LoadShedder } from "./load-shedder.js";
import type { RateLimits } from "./rate-limits.js";

/**
 * The API's protection, in the order a request meets it (after the API key
 * check, before the body is read):
 *
 * 1. draining (shutdown or rolling restart): 503 SHUTTING_DOWN with
 *    `Connection: close`, so a keep-alive client reconnects to a live worker;
 * 2. push routes while the event loop lags: 503 OVERLOADED. Not on the
 *    connection cap: pushes to clients already connected are what the
 *    gateway is for, and refusing them would not free a connection;
 * 3. push routes over RATE_PUSHES_PER_KEY_PER_SECOND: 429 RATE_LIMITED.
 *
 * Both carry `Retry-After` (whole seconds). `inspectBody` runs after JSON
 * parsing: bodies nested deeper than MAX_PAYLOAD_DEPTH or with `__proto__`
 * keys are a 400 with the path. `inFlight` counts requests still being
 * answered, so the shutdown can wait for pushes that wait for client acks.
 */

export const SHED_RETRY_AFTER_SECONDS = 1;

/** The guard's steps, for a push handled outside express. */
export interface PushGate {
  draining(): boolean;
  track(res: http.ServerResponse): void;
  admitPush(keyId: string): Promise<GatewayError | undefined>;
  inspect(body: unknown): JsonProblem | undefined;
}

export function createHttpGuard(deps: {
  cfg: Config;
  shedder: LoadShedder;
  limits: RateLimits;
  draining: () => boolean;
}) {
  const { cfg, shedder, limits } = deps;
  let inFlight = 0;
  let idleWaiters: (() => void)[] = [];
  const done = () => {
    inFlight--;
    if (inFlight === 0) {
      for (const w of idleWaiters) w();
      idleWaiters = [];
    }
  };

  /** Counts a response as in flight until it closes (the shutdown waits for these). */
  const track = (res: http.ServerResponse): void => {
    inFlight++;
    res.once("close", done);
  };

  /** Steps 2 and 3 for a push by this API key: the refusal, or undefined to go on. */
  const admitPush = async (keyId: string): Promise<GatewayError | undefined> => {
    if (shedder.shedsPushes()) {
      metrics.shed.inc({ reason: "push_lag" });
      return new GatewayError("OVERLOADED", undefined, { retryAfter: SHED_RETRY_AFTER_SECONDS });
    }
    const wait = await limits.push(keyId);
    if (wait === undefined) return undefined;
    metrics.rateLimited.inc({ scope: "push" });
    return new GatewayError("RATE_LIMITED", undefined, { retryAfter: Math.ceil(wait) });
  };

  const guard = (req: Request, res: Response, next: NextFunction): void => {
    track(res);
    if (deps.draining()) {
      // Read the body first: closing a connection with unread bytes in the
      // kernel's buffer sends a reset, and the client may lose the answer.
      const refuse = () => {
        res.setHeader("connection", "close");
        sendError(res, "SHUTTING_DOWN", undefined, { retryAfter: SHED_RETRY_AFTER_SECONDS });
      };
      if (req.complete) refuse();
      else {
        req.once("end", refuse);
        req.resume();
      }
      return;
    }
    if (req.method !== "POST" || !req.path.startsWith("/push")) {
      next();
      return;
    }
    // A refusal goes to the API's error handler like any GatewayError.
    admitPush(String(res.locals["apiKeyId"] ?? "anonymous")).then(next, next);
  };

  /** Step 4, on a parsed body: the problem, or undefined. */
  const inspect = (body: unknown): JsonProblem | undefined =>
    inspectJson(body, cfg.MAX_PAYLOAD_DEPTH);

  const inspectBody = (req: Request, _res: Response, next: NextFunction): void => {
    const problem = inspect(req.body);
    next(problem ? invalidRequest([problem]) : undefined);
  };

  return {
    guard,
    inspectBody,
    /** The same checks for a handler outside express (src/worker/http/fast-push.ts). */
    pushGate: { draining: deps.draining, track, admitPush, inspect } satisfies PushGate,
    inFlight: () => inFlight,
    /** Resolves when no API request is in flight, or after `timeoutMs`. */
    idle(timeoutMs: number): Promise<boolean> {
      if (inFlight === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        idleWaiters.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
    },
  };
}

// Kept here for the importers that know them from this module.
export {
  setApiSecurityHeaders,
  setPageSecurityHeaders as setPublicSecurityHeaders,
} from "../../shared/security-headers.js";
