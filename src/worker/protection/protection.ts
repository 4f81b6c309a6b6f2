import { type IncomingMessage, ServerResponse } from "node:http";
import type { Router } from "express";
import type { ClientAddressOf } from "../../shared/client-address.js";
import type { Logger } from "pino";
import type { Config } from "../../shared/config.js";
import type { Query } from "../../shared/ipc.js";
import type { ApiHelpers, ApiRoutes } from "../http/api-app.js";
import type { AuthService } from "../auth/auth-service.js";
import type { GatewayServer, GatewaySocket } from "../gateway/gateway.js";
import type { WorkerChannel } from "../ipc-channel.js";
import { pendingAcks } from "../sio-internals.js";
import { createAdmission } from "./admission.js";
import { createHandshakePacer } from "./handshake-pacer.js";
import { createEventGuard } from "../gateway/event-guard.js";
import { createHttpGuard } from "./http-guard.js";
import { createIpDenyList } from "./ip-deny-list.js";
import { createLoadShedder } from "./load-shedder.js";
import { mountProtectionRoutes, protectionOpenApi } from "../http/protection-routes.js";
import { createRateLimits } from "./rate-limits.js";
import { reconnectClients } from "./reconnect-clients.js";
import { createRevocations, type SharedRedis } from "./revocations.js";
import { watchSlowConsumers } from "./slow-consumers.js";
import { attachTokenLifetime } from "../gateway/token-lifetime.js";

/**
 * Everything that protects one worker, wired in one place so that
 * create-worker.ts only passes its pieces along:
 *
 * - handshakes, from the first Engine.IO request (admission.ts): IP deny
 *   list (FORBIDDEN), draining (SHUTTING_DOWN), load shedding (OVERLOADED),
 *   sessions and handshakes per client address (RATE_LIMITED); the Origin
 *   of every request with CORS_ORIGINS; revoked tokens (AUTH_REVOKED,
 *   through `auth`);
 * - sockets: events per socket and payload shape (`hooks`, `attach`),
 *   token expiry and `auth:refresh`, slow consumers;
 * - HTTP API: draining, shedding and pushes per key (`apiGuard`), body
 *   shape (`inspectBody`), `/api/tokens/revoke` and
 *   `/api/admin/restart-workers` (`apiRoutes`);
 * - shutdown: `drain` waits for API requests in flight (pushes waiting for
 *   client acks), then tells clients to reconnect.
 */

export interface ProtectionDeps {
  io: GatewayServer;
  cfg: Config;
  log: Logger;
  slot: number;
  auth: AuthService;
  /** The IPC channel to this host's primary (revocations, restart-workers). */
  primary: Pick<WorkerChannel, "send" | "answer">;
  /** Event-loop delay p99 over the last second, ms. */
  lagP99Ms: () => number;
  /** This worker is shutting down or being restarted. */
  draining: () => boolean;
  /** The client address of a request (TRUSTED_PROXIES: src/shared/client-address.ts). */
  clientAddressOf: ClientAddressOf;
  /** With REDIS_URL: the worker's Redis link (rate limits, durable revocations). */
  redis?: SharedRedis | undefined;
}

export function createProtection(deps: ProtectionDeps) {
  const { io, cfg } = deps;
  const log = deps.log.child({ module: "protection" });
  const redis = deps.redis;

  const shedder = createLoadShedder({
    maxConnections: cfg.MAX_CONNECTIONS_PER_WORKER,
    maxLagMs: cfg.MAX_EVENT_LOOP_LAG_MS,
    maxPushLagMs: cfg.MAX_PUSH_LAG_MS,
    connections: () => io.engine.clientsCount,
    lagP99Ms: deps.lagP99Ms,
  });
  const limits = createRateLimits({
    cfg,
    log,
    ...(redis ? { redis: redis.pub, redisUp: () => redis.up() } : {}),
  });
  const denyList = createIpDenyList(cfg.IP_DENY_LIST);
  const revocations = createRevocations({
    io,
    cfg,
    log,
    primary: deps.primary,
    ...(redis ? { redis } : {}),
  });
  const auth = revocations.guard(deps.auth);
  const events = createEventGuard(cfg);
  const http = createHttpGuard({ cfg, shedder, limits, draining: deps.draining });
  let slowConsumers: { close(): void } | undefined;

  const admission = createAdmission({
    io,
    cfg,
    log: deps.log,
    clientAddressOf: deps.clientAddressOf,
    denied: (ip) => denyList.denied(ip),
    draining: deps.draining,
    shedder,
    limits,
    pacer: createHandshakePacer(cfg.HANDSHAKES_PER_TURN),
  });
  const verifyPacer = createHandshakePacer(cfg.HANDSHAKES_PER_TURN);
  if (cfg.corsOrigins !== "*") {
    // CORS covers neither websockets nor later requests of a session: every
    // request that carries an Origin is checked, the upgrade included.
    const allowed = new Set(cfg.corsOrigins);
    io.engine.use((req: IncomingMessage, res: unknown, next: (err?: Error) => void) => {
      const origin = req.headers.origin;
      if (origin === undefined || allowed.has(origin)) return next();
      // An HTTP request gets Engine.IO's own 403 body; an upgrade, its 400 (a middleware failure).
      if (!(res instanceof ServerResponse)) return next(new Error("origin not allowed"));
      res.writeHead(403, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: 4, message: "origin not allowed" }));
    });
  }

  return {
    /** Pass to attachGateway instead of the plain service: refuses revoked tokens. */
    auth,
    hooks: events.hooks,
    /** Socket.IO's `allowRequest` (per-address admission from the first Engine.IO request). */
    allowRequest: admission.allowRequest,
    /** For attachGateway: the handshake's verdict and client address. */
    admission: (socket: GatewaySocket) =>
      admission.verdictOf(socket.request, socket.handshake.address),
    /** For attachGateway: HANDSHAKES_PER_TURN verifications started per event-loop turn. */
    paceVerify: (socket: GatewaySocket, start: () => void) => verifyPacer.admit(socket.conn, start),
    /** Per-socket parts; call once after attachGateway. */
    attach(): void {
      events.attach(io);
      attachTokenLifetime({ io, cfg, log: deps.log, auth });
      slowConsumers = watchSlowConsumers({
        io,
        log: deps.log,
        maxBufferedBytes: cfg.MAX_BUFFERED_BYTES_PER_SOCKET,
      });
    },
    overloaded: () => shedder.overloaded(),
    apiGuard: http.guard,
    inspectBody: http.inspectBody,
    pushGate: http.pushGate,
    apiRoutes: {
      mount: (router: Router, helpers: ApiHelpers) =>
        mountProtectionRoutes(router, helpers, { cfg, revocations, primary: deps.primary }),
      openApi: protectionOpenApi(cfg),
    } satisfies ApiRoutes,
    onRevoke: (q: Extract<Query, { kind: "revoke" }>) => revocations.apply(q),
    /** Loads shared state (revocations from Redis) before the worker reports ready. */
    start: () => revocations.start(2_000),
    /** At /ready: the start-up is not a stall (load-shedder.ts). */
    forgetStartUp: () => shedder.forgetStartUp(),
    /**
     * The worker's part of a graceful stop, once it refuses new work (`draining`):
     * waits for API requests in flight (pushes waiting for client acks), for
     * `alsoWaitFor` (forwards in flight) and for acks its clients still owe
     * (pushes relayed from other workers), so that every answer still reaches
     * a connected client; then tells the clients to reconnect elsewhere.
     */
    async drain(timeoutMs: number, alsoWaitFor: Promise<unknown>[] = []): Promise<void> {
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      const [idle] = await Promise.all([
        http.idle(timeoutMs),
        Promise.race([
          Promise.allSettled(alsoWaitFor),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, timeoutMs);
          }),
        ]),
      ]);
      clearTimeout(timer);
      if (!idle) log.warn({ inFlight: http.inFlight() }, "API requests still in flight at drain");
      // Pushes another worker relayed here may still wait for these clients' acks.
      const acked = await settle(
        () => pendingClientAcks(io) === 0,
        Math.max(0, timeoutMs - (Date.now() - started)),
      );
      if (!acked) log.warn({ acks: pendingClientAcks(io) }, "client acks still pending at drain");
      const left = Math.max(100, timeoutMs - (Date.now() - started));
      const n = await reconnectClients(io, left);
      log.info({ sockets: n, ms: Date.now() - started }, "drained; clients told to reconnect");
    },
    close(): void {
      shedder.close();
      slowConsumers?.close();
      revocations.close();
    },
  };
}

export type Protection = ReturnType<typeof createProtection>;

/** Acks this worker's sockets still owe for emits that asked for one (Socket.IO's per-socket map). */
function pendingClientAcks(io: GatewayServer): number {
  let n = 0;
  for (const s of io.of("/").sockets.values()) {
    n += pendingAcks(s).size;
  }
  return n;
}

/** Resolves true once `done()` holds (checked every 20 ms), false after `timeoutMs`. */
async function settle(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}
