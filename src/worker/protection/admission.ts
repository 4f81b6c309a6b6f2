import type http from "node:http";
import type { Logger } from "pino";
import type { ClientAddressOf } from "../../shared/client-address.js";
import type { Config } from "../../shared/config.js";
import type { ErrorCode } from "../../shared/errors.js";
import { metrics } from "../../shared/metrics.js";
import type { GatewayServer, HandshakeRefusal } from "../gateway/gateway.js";
import type { HandshakePacer } from "./handshake-pacer.js";
import type { LoadShedder } from "./load-shedder.js";
import type { RateLimits } from "./rate-limits.js";

/**
 * Who may open a session, decided at the first Engine.IO request (the
 * handshake), not at the Socket.IO CONNECT that a client may never send:
 * deny list (FORBIDDEN), draining (SHUTTING_DOWN), load shedding
 * (OVERLOADED), open sessions per address over MAX_CONNECTIONS_PER_IP and
 * handshakes per address over RATE_CONNECTIONS_PER_IP_PER_MINUTE
 * (RATE_LIMITED). Token-less sessions count like any other.
 *
 * A refused handshake still opens a session so that the client learns why
 * (`connect_error` with `err.data.code`, the contract's codes): its CONNECT
 * is refused with the verdict, and the server closes the session
 * REFUSED_SESSION_MS later whatever the client does. An address that keeps
 * more than REFUSED_OPEN_MAX refused sessions open is refused at the
 * Engine.IO level (HTTP 403), so refusals cannot pile up either.
 *
 * Every check uses the client address (TRUSTED_PROXIES aware), which the
 * gateway reads back with `addressOf` for its logs and socket data.
 */

const REFUSED_SESSION_MS = 2_000;
// Enough for a NAT'd office reconnecting at once to hear why; few enough
// that refusals cannot fill a worker.
const REFUSED_OPEN_MAX = 64;

export interface Verdict {
  ip: string;
  refusal?: HandshakeRefusal;
}

export interface AdmissionDeps {
  io: GatewayServer;
  cfg: Config;
  log: Logger;
  clientAddressOf: ClientAddressOf;
  denied: (ip: string) => boolean;
  draining: () => boolean;
  shedder: LoadShedder;
  limits: RateLimits;
  pacer: HandshakePacer;
}

export function createAdmission(deps: AdmissionDeps) {
  const { io, cfg, limits, shedder } = deps;
  const log = deps.log.child({ module: "admission" });
  const verdicts = new WeakMap<http.IncomingMessage, Verdict>();
  // Open sessions per address on this worker, and how many of them were refused.
  const open = new Map<string, number>();
  const refusedOpen = new Map<string, number>();
  const perWorkerCap = Math.max(1, Math.ceil(cfg.MAX_CONNECTIONS_PER_IP / cfg.WORKERS));

  const refuse = (code: ErrorCode, reason: string, retryAfter?: number): HandshakeRefusal => {
    if (code === "OVERLOADED") metrics.shed.inc({ reason });
    else if (code === "RATE_LIMITED") metrics.rateLimited.inc({ scope: reason });
    return retryAfter === undefined ? { code } : { code, retryAfter };
  };

  async function judge(ip: string): Promise<HandshakeRefusal | undefined> {
    if (deps.denied(ip)) return refuse("FORBIDDEN", "ip_deny_list");
    if (deps.draining()) return refuse("SHUTTING_DOWN", "draining", 1);
    const shed = shedder.reason();
    if (shed) return refuse("OVERLOADED", `handshake_${shed}`, 1);
    if ((open.get(ip) ?? 0) >= perWorkerCap) {
      return refuse("RATE_LIMITED", "connections_per_ip", 1);
    }
    const wait = await limits.connection(ip);
    if (wait !== undefined) return refuse("RATE_LIMITED", "connections", Math.ceil(wait));
    return undefined;
  }

  const add = (m: Map<string, number>, ip: string, n: number) => {
    const v = (m.get(ip) ?? 0) + n;
    if (v <= 0) m.delete(ip);
    else m.set(ip, v);
  };

  // Each open session's address, for one close listener shared by every
  // session (called with the Engine.IO socket as `this`; the handshake
  // request is gone by then: sio-internals.ts releases it).
  const sessionIp = new WeakMap<EngineConn, string>();
  function onClose(this: EngineConn) {
    const ip = sessionIp.get(this);
    if (ip !== undefined) add(open, ip, -1);
  }

  io.engine.on("connection", (conn: EngineConn) => {
    const verdict = verdicts.get(conn.request);
    if (!verdict) return;
    const { ip } = verdict;
    add(open, ip, 1);
    sessionIp.set(conn, ip);
    conn.on("close", onClose);
    if (!verdict.refusal) return;
    add(refusedOpen, ip, 1);
    // Discard: a polling client that never polls again would otherwise hold it 30 s more.
    const timer = setTimeout(() => conn.close(true), REFUSED_SESSION_MS);
    timer.unref();
    conn.once("close", () => {
      clearTimeout(timer);
      add(refusedOpen, ip, -1);
    });
  });

  return {
    /** Socket.IO's `allowRequest`: runs once per session, on its first request. */
    allowRequest(req: http.IncomingMessage, callback: (err: string | null, ok: boolean) => void) {
      // A few new sessions per event-loop turn (handshake-pacer.ts says why).
      deps.pacer.admit(req.socket, () => {
        const ip = deps.clientAddressOf(req.socket.remoteAddress, req.headers["x-forwarded-for"]);
        judge(ip).then(
          (refusal) => {
            if (refusal && (refusedOpen.get(ip) ?? 0) >= REFUSED_OPEN_MAX) {
              return callback(refusal.code, false);
            }
            verdicts.set(req, refusal ? { ip, refusal } : { ip });
            callback(null, true);
          },
          (err: unknown) => {
            log.error({ err }, "handshake admission failed unexpectedly");
            verdicts.set(req, { ip, refusal: refuse("OVERLOADED", "handshake_error", 1) });
            callback(null, true);
          },
        );
      });
    },
    /** The verdict of a session's handshake, at its Socket.IO CONNECT. */
    verdictOf(req: http.IncomingMessage, fallbackIp: string): Verdict {
      return verdicts.get(req) ?? { ip: fallbackIp };
    },
  };
}

/** The part of an Engine.IO socket this module uses. */
interface EngineConn {
  request: http.IncomingMessage;
  close(discard?: boolean): void;
  on(event: "close", listener: (this: EngineConn) => void): void;
  once(event: "close", listener: () => void): void;
}

export type Admission = ReturnType<typeof createAdmission>;
