import cluster from "node:cluster";
import { Socket } from "node:net";
import { setupPrimary as setupClusterAdapterPrimary } from "@socket.io/cluster-adapter";
import type { Config } from "../shared/config.js";
import { createLogRing } from "../shared/log-ring.js";
import { primaryMetrics } from "../shared/metrics.js";
import { initLogger, loggerOptionsFrom } from "../shared/logger.js";
import { isPrimaryPath } from "../shared/front-door.js";
import { createBalancer, type PortKind } from "./balancer.js";
import { createHandoff } from "./handoff.js";
import { createHeartbeat } from "./heartbeat.js";
import { createListeners } from "./listeners.js";
import { createPrimaryCore } from "./primary-core.js";
import { Supervisor } from "./supervisor.js";

export interface PrimaryContext {
  cfg: Config;
  env: Record<string, string | undefined>;
  generated: { apiKey?: string; dashboardToken?: string; jwtSecret?: boolean };
}

/**
 * The primary: forks and supervises workers, decides the ports (the workers
 * accept connections themselves: listeners.ts), routes the connections a
 * worker relays (another worker's session, the primary's own paths), merges
 * cluster-wide queries, and answers health and readiness itself. It never
 * handles a Socket.IO socket.
 */
export async function runPrimary({ cfg, env, generated }: PrimaryContext): Promise<void> {
  const recentLogs = createLogRing();
  const log = initLogger(loggerOptionsFrom(cfg, { role: "primary" }, recentLogs.push));

  if (cfg.production && cfg.jwt.kind !== "secret" && !cfg.JWT_AUDIENCE) {
    log.warn(
      { jwt: cfg.jwt.kind, issuer: cfg.JWT_ISSUER ?? null },
      "JWT_AUDIENCE is not set: every token this key signed is accepted, whatever service it was issued for" +
        (cfg.JWT_ISSUER ? "" : " (and JWT_ISSUER is not set either)"),
    );
  }

  // "advanced" serialization carries Buffers (binary payloads) between processes.
  cluster.setupPrimary({
    serialization: "advanced",
    execArgv: workerExecArgv(process.execArgv, cfg.WORKER_SEMI_SPACE_MB),
  });
  setupClusterAdapterPrimary();

  const sup = new Supervisor({
    workers: cfg.WORKERS,
    env,
    log,
    backoffBaseMs: cfg.WORKER_RESTART_BACKOFF_BASE_MS,
    backoffMaxMs: cfg.WORKER_RESTART_BACKOFF_MAX_MS,
    maxCrashes: cfg.WORKER_MAX_CRASHES,
  });
  // Queries, directory, stores, readiness, /metrics, dashboard, ss:state (primary-core.ts).
  const { host, ipc, deliveryStores, internal, metricsAggregator, dashboard, pushState } =
    createPrimaryCore({ cfg, sup, log, recentLogs });

  // A worker alive but not answering (blocked event loop, stopped process)
  // is treated like a crashed one: out of rotation, killed, replaced.
  const heartbeat = createHeartbeat({
    intervalMs: Math.min(1_000, Math.floor(cfg.WORKER_HANG_TIMEOUT_MS / 4)),
    timeoutMs: cfg.WORKER_HANG_TIMEOUT_MS,
    ping: (slot, seq) => ipc.send(slot, { t: "ss:ping", seq }),
    onHung: (slot, silentMs) => {
      const workerPid = sup.slots[slot]?.worker?.process.pid;
      primaryMetrics.workersReplaced.inc({ reason: "hung" });
      // Killed at once: until it is gone, the kernel gives its listeners new
      // connections. Logged once it is gone, when new connections reach only live workers.
      void sup
        .replaceHung(slot, silentMs)
        .then(() =>
          log.error(
            { worker: slot, workerPid, silentMs },
            "worker stopped answering the heartbeat; killed it and replacing it",
          ),
        );
      pushState();
    },
  });
  ipc.on("ss:pong", (slot) => heartbeat.answered(slot));
  sup.on("ready", (slot) => heartbeat.watch(slot));
  sup.on("exit", (slot) => heartbeat.forget(slot));
  sup.on("crash-loop", () => void shutdown("crash-loop", 1));

  // Rolling restart of the workers (a deploy of new code, a leak): SIGUSR2
  // or POST /api/admin/restart-workers. One worker at a time; see supervisor.ts.
  const restartWorkers = (trigger: string) => {
    if (host.draining || sup.restarting) return;
    log.info({ trigger }, "rolling restart of workers");
    void sup
      .rollingRestart(cfg.SHUTDOWN_TIMEOUT_MS)
      .then((ok) => log.info({ ok }, "rolling restart finished"));
  };
  ipc.on("ss:restart-workers", () => restartWorkers("api"));
  process.on("SIGUSR2", () => restartWorkers("SIGUSR2"));

  const eligibleSlots = () => (host.draining ? [] : sup.eligibleSlots());
  const handoff = createHandoff({ sup, eligibleSlots, log });
  const balancer = createBalancer({
    log,
    eligibleSlots,
    liveSlots: () => sup.liveSlots(),
    handOff: (slot, port: PortKind, socket, head) => handoff.send(slot, port, socket, head),
    serveLocally: (socket, head) => internal.serve(socket, head),
    isPrimaryPath,
    // Until the request line: a connection that sends nothing is not kept longer than a stalled one.
    headerTimeoutMs: Math.min(10_000, cfg.HTTP_REQUEST_TIMEOUT_MS),
  });
  // Connections a worker accepted but does not serve: another worker's session,
  // the primary's paths, a new session while it sheds load or stops.
  ipc.on("ss:relay", (slot, msg, socket) => {
    if (socket instanceof Socket) {
      balancer.accept(msg.port, socket, Buffer.from(msg.head, "latin1"), slot);
    }
  });
  const listeners = createListeners({
    sup,
    ipc,
    balancer,
    log,
    ports: { public: cfg.PORT, api: cfg.API_PORT },
    hosts: { public: cfg.HOST, api: cfg.API_HOST ?? cfg.HOST },
    listenTimeoutMs: 5_000,
  });

  // Signals are handled from before the first fork: a SIGTERM during start
  // stops the workers too, and exits 0, rather than killing the primary alone.
  let stopping: Promise<void> | undefined;
  async function shutdown(reason: string, code = 0): Promise<void> {
    if (stopping) return stopping;
    stopping = (async () => {
      log.info({ reason }, "shutting down");
      host.draining = true;
      pushState();
      // Each stopping worker gives its listening sockets back (listeners.ts);
      // the primary accepts on them until the workers are gone, only to
      // answer: /ready says 503 "draining" at once, and everything else gets
      // 503 with Retry-After (no worker is eligible while draining), so a
      // load balancer sees "not ready" rather than refused connections.
      // Sessions already on a worker still reach it while it drains.
      listeners.drain();
      dashboard.close();
      heartbeat.stop();
      metricsAggregator.stop();
      await sup.stop(cfg.SHUTDOWN_TIMEOUT_MS);
      listeners.close();
      deliveryStores.close();
      log.info("all workers stopped; bye");
      await new Promise<void>((resolve) => log.flush(() => resolve()));
      process.exit(code);
    })();
    return stopping;
  }

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      log.warn({ signal }, "second signal: forcing exit");
      for (const s of sup.slots) s.worker?.process.kill("SIGKILL");
      process.exit(1);
    }
    void shutdown(signal);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  const deadline = () =>
    setTimeout(() => {
      log.error("shutdown deadline passed: forcing exit");
      process.exit(1);
    }, cfg.SHUTDOWN_TIMEOUT_MS + 2_000).unref();
  process.once("SIGTERM", deadline);
  process.once("SIGINT", deadline);

  const allReady = new Promise<void>((resolve) => sup.once("all-ready", resolve));
  sup.start();
  await allReady;
  // Listen only once every worker is ready: a connection handed to a worker
  // that is still loading would be lost. A worker listens itself only once ready.
  const { publicPort, apiPort } = await listeners.start();
  host.listening = true;
  host.ports = { publicPort, apiPort };
  pushState();

  const shownHost = (h: string) => (h === "0.0.0.0" || h === "::" ? "localhost" : h);
  const shown = shownHost(cfg.HOST);
  const shownApi = shownHost(cfg.API_HOST ?? cfg.HOST);
  log.info(
    { publicPort, apiPort, workers: cfg.WORKERS, workersListening: listeners.workersListening },
    "listening",
  );
  // A machine-readable line for tests and scripts that start us on port 0.
  process.stdout.write(`${JSON.stringify({ msg: "ports", publicPort, apiPort })}\n`);
  if (cfg.demo) {
    const lines = [
      "",
      generated.jwtSecret
        ? "  socket-server is running (dev mode: a generated JWT secret; the demo mints tokens for any user)"
        : "  socket-server is running (DEMO=true: the demo page mints tokens for any user with JWT_SECRET)",
      `  demo page:        http://${shown}:${publicPort}/`,
      `  dashboard:        http://${shownApi}:${apiPort}/dashboard`,
      ...(generated.dashboardToken ? [`  dashboard token:  ${generated.dashboardToken}`] : []),
      ...(generated.apiKey ? [`  demo API key:     ${generated.apiKey}`] : []),
      `  push to a user:   curl -H "Authorization: Bearer ${generated.apiKey ?? "<API key>"}" \\`,
      `                      -H 'content-type: application/json' \\`,
      `                      -d '{"userId":"alice","event":"hello","payload":{"text":"hi"}}' \\`,
      `                      http://${shownApi}:${apiPort}/api/push`,
      "",
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  } else {
    process.stdout.write(
      "  demo page and /demo/token: off (they run only when the server generates its own JWT secret, or with DEMO=true)\n",
    );
  }
}

/**
 * The workers' node flags: the primary's, plus a small young generation
 * (WORKER_SEMI_SPACE_MB) unless a `--max-semi-space-size` is given already
 * (NODE_OPTIONS reaches the workers through their environment and wins).
 */
export function workerExecArgv(primaryArgs: readonly string[], semiSpaceMb: number): string[] {
  const given =
    primaryArgs.some((a) => a.startsWith("--max-semi-space-size")) ||
    (process.env["NODE_OPTIONS"] ?? "").includes("--max-semi-space-size");
  if (semiSpaceMb === 0 || given) return [...primaryArgs];
  return [...primaryArgs, `--max-semi-space-size=${semiSpaceMb}`];
}
