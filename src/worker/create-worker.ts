import { randomBytes } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createAdapter as createClusterAdapter } from "@socket.io/cluster-adapter";
import { Server, type ServerOptions } from "socket.io";
import type { Logger } from "pino";
import type { Config } from "../shared/config.js";
import type { ReplacedWorker, WorkerLoad } from "../shared/ipc.js";
import type { LogRing } from "../shared/log-ring.js";
import { createApiApp } from "./http/api-app.js";
import { createAuthService } from "./auth/auth-service.js";
import { createClusterClient } from "./cluster-client.js";
import { createClientScript } from "./http/client-script.js";
import { createDelivery } from "./push/create-delivery.js";
import { createDemo } from "./http/demo.js";
import { createForwarder } from "./forward/create-forwarder.js";
import { createLifecycleHooks } from "./forward/lifecycle-hooks.js";
import { createDirectPush } from "./push/direct-push.js";
import { createFrontDoor } from "./front-door.js";
import { attachGateway, type GatewayServer } from "./gateway/gateway.js";
import type { WorkerChannel } from "./ipc-channel.js";
import { createLocalQueries } from "./local-queries.js";
import { createHistoryRooms } from "./history/history-rooms.js";
import { createRoomPresence } from "./live-rooms/room-presence.js";
import { attachRoomSignals } from "./live-rooms/room-signals.js";
import { setPublicSecurityHeaders } from "./protection/http-guard.js";
import { createProtection } from "./protection/protection.js";
import { createPushService } from "./push/push-service.js";
import { trimSocketMemory } from "./gateway/socket-memory.js";
import { createSessionIds } from "./session-ids.js";
import { chunkLocalBroadcasts } from "./sio-internals.js";
import { type MultiHost, setupMultiHost } from "./redis/multi-host.js";
import { createWorkerObservability } from "./worker-metrics.js";
import { createClientAddress } from "../shared/client-address.js";
import { writeHttpError } from "../shared/http-error.js";
import { enforceRequestTimeouts } from "../shared/http-timeouts.js";

export interface WorkerDeps {
  cfg: Config;
  log: Logger;
  /** This worker's slot (SS_SLOT): in its sids, its logs and its metrics. */
  slot: number;
  /** Every message to and from the primary goes through this one channel (ipc-channel.ts). */
  primary: WorkerChannel;
  /** The worker's last log lines, for the dashboard (worker-metrics.ts). */
  recentLogs: LogRing;
  /**
   * The Socket.IO adapter when there is no Redis; the cluster adapter (over
   * `process.send`) by default. Tests that run a worker in their own process
   * pass socket.io's in-memory one (test/support/in-process.ts).
   */
  adapter?: ServerOptions["adapter"];
}

export interface Worker {
  /** Answers the public port's connections (its own front door's, or handed over by the primary). */
  publicServer: http.Server;
  /** Answers the API port's connections (its own front door's, or handed over by the primary). */
  apiServer: http.Server;
  io: GatewayServer;
  /** Waits (briefly) for Redis and the stores, then tells the primary this worker is ready. */
  start(): Promise<void>;
  /**
   * Stops in order under a deadline (the primary's `ss:shutdown` calls it
   * too). Resolves with 0 once all is closed and the logs flushed, or with 1
   * when the deadline passes first; later calls get the first one's result.
   */
  shutdown(timeoutMs: number): Promise<number>;
  /** The first shutdown's result, whoever asked for it. */
  stopped: Promise<number>;
}

/** Sockets a local broadcast writes per tick (chunkLocalBroadcasts). */
const BROADCAST_CHUNK = 500;

/**
 * A worker: one Socket.IO server on the public port's connections and the
 * backend API on the API port's. It accepts them itself on the listening
 * sockets the primary lends it (`ss:listen`, once ready: front-door.ts), and
 * takes those the primary hands over (`ss:conn`: sessions this worker owns
 * that reached another process). It never touches the process (signals,
 * exit: run-worker.ts).
 */
/** The load report's Redis part: up or down, and why it is down (for /ready). */
function redisLoad(m: MultiHost): Pick<WorkerLoad, "redis" | "redisReason"> {
  const reason = m.redisDownReason();
  return m.redisState() === "up"
    ? { redis: "up" }
    : { redis: "down", ...(reason ? { redisReason: reason.slice(0, 120) } : {}) };
}

export function createWorker(deps: WorkerDeps): Worker {
  const { cfg, log, slot, primary, recentLogs } = deps;
  const cluster = createClusterClient(primary);
  // Redis between hosts, queries to every host (docs/scaling.md).
  const multiHost = cfg.redis ? setupMultiHost({ cfg, log, slot, local: cluster }) : undefined;
  let primaryState = {
    ready: false,
    draining: false,
    reasons: ["starting"],
    workers: { ready: 0, total: cfg.WORKERS },
    replaced: [] as ReplacedWorker[],
    accepting: [] as number[],
  };

  // The ports the primary bound (PORT/API_PORT may be 0); the demo page shows the API one.
  let boundPorts: { publicPort?: number; apiPort?: number } = {};
  const demo = createDemo(cfg, { ports: () => boundPorts });
  const clientScript = createClientScript();
  const publicServer = http.createServer((req, res) => {
    // Socket.IO answers its own path before this handler runs.
    if (clientScript.handle(req, res) || demo.handle(req, res)) return;
    if (req.url === "/health") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "ok", pid: process.pid }));
      return;
    }
    writeHttpError(req, res, "NOT_FOUND");
  });
  enforceRequestTimeouts(publicServer, cfg.HTTP_REQUEST_TIMEOUT_MS);

  const io: GatewayServer = new Server(publicServer, {
    adapter: multiHost?.adapter ?? deps.adapter ?? createClusterAdapter(),
    maxHttpBufferSize: cfg.MAX_PAYLOAD_BYTES,
    pingInterval: cfg.PING_INTERVAL_MS,
    pingTimeout: cfg.PING_TIMEOUT_MS,
    perMessageDeflate: false,
    httpCompression: false,
    connectTimeout: 10_000,
    cors:
      cfg.corsOrigins === "*"
        ? { origin: true, credentials: true }
        : { origin: [...cfg.corsOrigins], credentials: true },
    // Per-address admission from the first Engine.IO request (protection/admission.ts).
    allowRequest: (req, callback) => protection.allowRequest(req, callback),
  });
  // A broadcast to thousands of this worker's sockets goes out 500 at a time,
  // a tick per chunk, in order (sio-internals.ts says why).
  if (!chunkLocalBroadcasts(io.of("/").adapter, BROADCAST_CHUNK)) {
    log.warn("socket.io-adapter changed: broadcasts not chunked");
  }
  // Every public-port response closes its connection: this TCP connection was
  // routed by its first request's sid, and a browser may reuse a keep-alive
  // connection for another tab's session (sticky's flaw).
  // Added after `new Server()`, which replaces the request listeners it finds.
  publicServer.prependListener("request", (_req, res: http.ServerResponse) => {
    res.shouldKeepAlive = false;
    setPublicSecurityHeaders(res);
  });
  io.engine.generateId = createSessionIds(slot);

  const auth = createAuthService(cfg);
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  let lastLag = 0;
  let shuttingDown = false;
  let settle: (code: number) => void = () => {};
  const stopped = new Promise<number>((resolve) => {
    settle = resolve;
  });
  // Rate limits, load shedding, token lifetime and revocation, input checks.
  const protection = createProtection({
    io,
    cfg,
    log,
    slot,
    auth,
    primary,
    lagP99Ms: () => lastLag,
    draining: () => shuttingDown || primaryState.draining,
    redis: multiHost?.link,
    clientAddressOf: createClientAddress(cfg.TRUSTED_PROXIES),
  });
  const overloaded = () => protection.overloaded();

  const forwarding = createForwarder({ cfg, log });
  // Cluster-wide queries: this host's workers, or every host's with REDIS_URL.
  const clusterQueries = multiHost?.cluster ?? cluster;
  // HISTORY_ROOMS: positions, ordered delivery and recovery (src/worker/history).
  const history = createHistoryRooms({
    io,
    cfg,
    log,
    primary,
    // socket.io's in-memory adapter (one worker in a test's process) has no peers to tell.
    peers: multiHost !== undefined || deps.adapter === undefined,
  });
  // Acks, offline store with replay, idempotency keys, batch push (src/worker/push).
  const delivery = createDelivery({
    history,
    io,
    cfg,
    log,
    cluster: clusterQueries,
    primary,
    owner: `${multiHost?.hostId ?? "local"}:${slot}`,
  });
  // One host: pushes to users go only to the workers that hold them
  // (src/primary/user-directory.ts); with Redis the adapter carries them.
  const direct = cfg.redis ? undefined : createDirectPush({ io, primary });
  attachGateway({
    io,
    cfg,
    log,
    auth: protection.auth,
    forwarder: forwarding,
    hooks: [
      protection.hooks,
      ...(direct ? [direct.hooks] : []),
      createLifecycleHooks({ enabled: cfg.FORWARD_LIFECYCLE, forwarder: forwarding, log }),
      delivery.hooks,
      history.hooks,
    ],
    admission: protection.admission,
    paceVerify: protection.paceVerify,
  });
  protection.attach();
  // Rooms that feel live: presence (PRESENCE_ROOMS) and signals (SIGNAL_ROOMS).
  const presence = createRoomPresence({
    io,
    cfg,
    log,
    primary,
    ...(multiHost
      ? {
          redis: {
            link: multiHost.link,
            holder: `${multiHost.hostId}:${slot}:${randomBytes(4).toString("hex")}`,
            cluster: cfg.redis?.kind === "cluster",
          },
        }
      : {}),
  });
  attachRoomSignals({ io, cfg });
  // Let go of the handshake's request, headers and token once connected.
  trimSocketMemory(io);

  const status = () => {
    const mem = process.memoryUsage();
    return {
      worker: slot,
      pid: process.pid,
      connections: io.engine.clientsCount,
      // Users and rooms as the metrics and the dashboard count them (worker-metrics.ts).
      ...observability.counts(),
      lagMs: lastLag,
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      uptimeSeconds: Math.round(process.uptime()),
      authMode: auth.mode,
      forwarding: forwarding.status(),
      ...(multiHost
        ? { redis: multiHost.redisState(), crossHostDropped: multiHost.droppedMessages() }
        : {}),
    };
  };
  const observability = createWorkerObservability({
    io,
    slot,
    lagMs: () => lastLag,
    authQueue: () => auth.stats().queueSize,
    logs: recentLogs,
    redis: cfg.redis !== undefined,
  });
  const answer = createLocalQueries(io, {
    status,
    observability,
    custom: new Map([...delivery.queries, ...presence.queries]),
    onRevoke: protection.onRevoke,
  });

  const push = createPushService({ io, log, delivery: delivery.pipeline, direct, history });
  const app = createApiApp({
    cfg,
    log,
    push,
    cluster: clusterQueries,
    primary,
    guard: protection.apiGuard,
    afterBody: protection.inspectBody,
    pushGate: protection.pushGate,
    routes: [protection.apiRoutes, delivery.apiRoutes(push)],
    // The primary's view, pushed on every change, so /ready reads the same on any connection.
    readiness: () => primaryState,
  });
  const apiServer = http.createServer(app);
  apiServer.keepAliveTimeout = 75_000;
  enforceRequestTimeouts(apiServer, cfg.HTTP_REQUEST_TIMEOUT_MS);

  const loadTimer = setInterval(() => {
    lastLag = Math.round(lag.percentile(99) / 1e6);
    lag.reset();
    const load: WorkerLoad = {
      slot,
      connections: io.engine.clientsCount,
      lagMs: lastLag,
      overloaded: overloaded(),
      ...(multiHost ? redisLoad(multiHost) : {}),
    };
    primary.send({ t: "ss:load", load });
  }, 1_000);
  loadTimer.unref();

  const frontDoor = createFrontDoor({
    log,
    slot,
    servers: { public: publicServer, api: apiServer },
    relay: (port, socket, head, written) =>
      primary.send({ t: "ss:relay", port, head: head.toString("latin1") }, socket, written),
    // Shedding load, with another worker that takes new sessions: the primary hands them there.
    passOnNew: () => overloaded() && primaryState.accepting.some((s) => s !== slot),
    giveBack: async (port, server) => {
      await primary.call("ss:unlisten", { port }, 2_000, server);
    },
    headerTimeoutMs: Math.min(10_000, cfg.HTTP_REQUEST_TIMEOUT_MS),
  });

  const shutdown = (timeoutMs: number): Promise<number> => {
    if (!shuttingDown) void stop(timeoutMs);
    return stopped;
  };
  const stop = async (timeoutMs: number) => {
    shuttingDown = true;
    // Past the deadline the stop is not orderly any more: the exit code says so.
    const force = setTimeout(() => {
      log.warn({ timeoutMs }, "worker shutdown deadline passed; exiting");
      settle(1);
    }, timeoutMs);
    log.info("worker shutting down");
    // First, no new connections: the listening sockets go back to the
    // primary (which accepts on them until a replacement takes them), and
    // the kernel gives new connections to the other workers or to it.
    await frontDoor.close(Math.min(2_000, timeoutMs / 4));
    // From here new handshakes and API requests are refused (protection).
    // Forwards and API requests in flight (pushes waiting for client acks)
    // finish while their clients are still connected; then the clients are
    // told to reconnect, which takes them to another worker or host.
    // Kept-alive API connections stay open until then: a request on one gets
    // 503 SHUTTING_DOWN with Connection: close (closing them at once races
    // requests already on the wire, and the client sees a reset).
    const budget = Math.max(500, timeoutMs - 1_500);
    await protection.drain(budget, [forwarding.drain(budget).catch(() => {})]);
    io.engine.close();
    // The sockets just closed may have `disconnect` lifecycle events to send,
    // and presence rooms they left.
    await Promise.all([forwarding.close(1_000).catch(() => {}), presence.close().catch(() => {})]);
    apiServer.close();
    protection.close();
    observability.stop();
    await auth.close().catch(() => {});
    // The whole host stopping (not a worker restart): other hosts stop asking it.
    await multiHost?.close(primaryState.draining).catch(() => {});
    await delivery.close().catch(() => {});
    await history.close().catch(() => {});
    clearTimeout(force);
    log.flush(() => settle(0));
  };

  primary.on("ss:conn", (msg, handle) => {
    if (!(handle instanceof net.Socket)) return;
    const server = msg.port === "public" ? publicServer : apiServer;
    server.emit("connection", handle);
    handle.emit("data", Buffer.from(msg.head, "latin1"));
    handle.resume();
  });
  primary.answer("ss:listen", ({ port }, handle) => {
    if (!(handle instanceof net.Server)) throw new Error("ss:listen without its socket");
    if (shuttingDown) {
      // The primary's copy stays open: closing this one resets nothing.
      handle.close();
      throw new Error("the worker is stopping");
    }
    frontDoor.adopt(port, handle);
    log.debug({ port }, "accepting connections");
    return null;
  });
  primary.answer("ss:local-query", ({ q }) => answer(q));
  primary.on("ss:state", (msg) => {
    primaryState = {
      ready: msg.ready,
      draining: msg.draining,
      reasons: msg.reasons,
      workers: { ready: msg.readyWorkers, total: msg.workers },
      replaced: msg.replaced,
      accepting: msg.accepting,
    };
    if (msg.apiPort !== undefined) {
      boundPorts = { publicPort: msg.publicPort, apiPort: msg.apiPort };
    }
  });
  primary.on("ss:shutdown", (msg) => void shutdown(msg.timeoutMs));
  // Answered from this event loop: a blocked loop or a stopped process stays silent.
  primary.on("ss:ping", (msg) => primary.send({ t: "ss:pong", seq: msg.seq }));

  const start = async () => {
    // A short wait for Redis, so that a healthy start is ready at once; past
    // it the host starts degraded and /ready says why (docs/scaling.md).
    await multiHost?.start(3_000);
    await presence.start();
    await Promise.all([delivery.start(3_000), history.start(3_000)]);
    await protection.start();
    // What the loop went through while starting is not load: without this,
    // a start slowed by a busy host refused the first pushes after /ready.
    lag.reset();
    lastLag = 0;
    protection.forgetStartUp();
    primary.send({ t: "ss:ready", slot });
    log.info({ authMode: auth.mode }, "worker ready");
  };

  return { publicServer, apiServer, io, start, shutdown, stopped };
}
