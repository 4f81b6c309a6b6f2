import type { Worker as ClusterWorker } from "node:cluster";
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import net from "node:net";
import { Adapter } from "socket.io-adapter";
import { vi } from "vitest";
import { createBalancer, type PortKind } from "../../src/primary/balancer.js";
import { createPrimaryCore } from "../../src/primary/primary-core.js";
import type { SlotState, Supervisor, SupervisorEvents } from "../../src/primary/supervisor.js";
import { loadConfig, withDevDefaults } from "../../src/shared/config.js";
import {
  isWorkerToPrimary,
  type PrimaryToWorker,
  type WorkerToPrimary,
} from "../../src/shared/ipc.js";
import { isPrimaryPath } from "../../src/shared/front-door.js";
import { createLogRing } from "../../src/shared/log-ring.js";
import { initLogger, loggerOptionsFrom } from "../../src/shared/logger.js";
import { primaryRegistry, registry, startAlertCountersAtZero } from "../../src/shared/metrics.js";
import { resumeHandleReads } from "../../src/shared/node-internals.js";
import { createWorker, type Worker } from "../../src/worker/create-worker.js";
import { type ChannelPort, createWorkerChannel } from "../../src/worker/ipc-channel.js";
import { apiFetch, outputLog } from "./output.js";
import { type RunningServer, testEnv, useStarted } from "./server.js";

// The worker serves the client bundle from next to its own module: in dist,
// dist/client/client.js; run from src/ that would be src/client/client.js,
// which is never built. Here it is the built one (`npm run build`).
vi.mock("../../src/worker/http/client-script.js", async (importOriginal) => {
  const mod = await importOriginal<typeof import("../../src/worker/http/client-script.js")>();
  const built = new URL("../../dist/client/client.js", import.meta.url);
  return { ...mod, createClientScript: (file: URL = built) => mod.createClientScript(file) };
});

/**
 * The one-process integration layer: one worker (`createWorker`) in the test
 * process, behind the primary's real modules (IPC hub, queries, user
 * directory, delivery stores, revocations, and on the API port the balancer
 * with /ready, /metrics and the dashboard) over an in-memory channel pair,
 * on port 0. The public port is the worker's own server. What it cannot show
 * is the cluster itself (several workers, forks, crashes, restarts, signals):
 * those tests start the real server (`startServer` in server.ts).
 *
 * One per test file: metrics and the root logger are module singletons, and
 * a test file has its process to itself (vitest's forks pool).
 */

/** What `startServer` returns, but the child process. */
export type TestServer = Omit<RunningServer, "proc" | "stop"> & {
  /** Stops as the primary would (drain, then the worker's ordered shutdown): the worker's exit code. */
  stop(timeoutMs?: number): Promise<number>;
  worker: Worker;
};

export interface InProcessOptions {
  /** Environment-style configuration, as for `startServer` (WORKERS is 1: one worker). */
  env?: Record<string, string | undefined>;
  /** Do not fill in test secrets. */
  bare?: boolean;
}

/**
 * Two ends of a worker's channel in one process: each message is copied as
 * IPC would (structured clone) and arrives on a later turn; a socket handed
 * over travels as itself.
 */
function channelPair(toPrimary: (msg: WorkerToPrimary) => void) {
  let open = true;
  const port = Object.assign(new EventEmitter(), {
    get connected() {
      return open;
    },
    send(msg: unknown) {
      if (!open) return false;
      const copy = structuredClone(msg);
      setImmediate(() => {
        if (isWorkerToPrimary(copy)) toPrimary(copy);
      });
      return true;
    },
  });
  return {
    port: port as ChannelPort & EventEmitter,
    get open() {
      return open;
    },
    toWorker(msg: PrimaryToWorker, handle?: net.Socket): boolean {
      if (!open) return false;
      const copy = structuredClone(msg);
      setImmediate(() => {
        // In a cluster the worker gets a fresh handle; here it is the balancer's,
        // whose reads it stopped: they start again in this same turn.
        if (handle) resumeHandleReads(handle);
        port.emit("message", copy, handle);
      });
      return true;
    },
    close() {
      open = false;
      port.emit("disconnect");
    },
  };
}

/** The supervisor's side for one worker that is not a child process: its slot, messages and exit. */
class OneWorkerSupervisor extends EventEmitter<SupervisorEvents> {
  readonly slots: SlotState[];
  readonly replaced = [];
  readonly restarting = false;
  readonly worker: ClusterWorker;
  private readonly channel: ReturnType<typeof channelPair>;

  constructor() {
    super();
    this.channel = channelPair((msg) => this.fromWorker(msg));
    const isConnected = () => this.channel.open;
    this.worker = {
      process: { pid: process.pid },
      isConnected,
      isDead: () => !isConnected(),
    } as unknown as ClusterWorker;
    this.slots = [
      {
        slot: 0,
        worker: this.worker,
        ready: false,
        load: undefined,
        startedAt: Date.now(),
        crashes: 0,
        restarts: 0,
        restartTimer: undefined,
        hung: false,
      },
    ];
  }

  get port(): ChannelPort {
    return this.channel.port;
  }

  private fromWorker(msg: WorkerToPrimary): void {
    const s = this.slots[0]!;
    if (s.worker !== this.worker) return;
    if (msg.t === "ss:ready") {
      s.ready = true;
      this.emit("ready", 0);
      this.emit("all-ready");
    } else if (msg.t === "ss:load") {
      s.load = msg.load;
    }
    this.emit("message", 0, msg, this.worker, undefined);
  }

  send(slot: number, msg: PrimaryToWorker, handle?: net.Socket): boolean {
    if (slot !== 0 || this.slots[0]!.worker !== this.worker) return false;
    return this.channel.toWorker(msg, handle);
  }

  broadcast(msg: PrimaryToWorker): void {
    this.send(0, msg);
  }

  readySlots(): number[] {
    const s = this.slots[0]!;
    return s.ready && this.channel.open ? [0] : [];
  }

  acceptingSlots(): number[] {
    return this.readySlots();
  }

  eligibleSlots(): number[] {
    return this.readySlots();
  }

  liveSlots(): Set<number> {
    return new Set(this.channel.open ? [0] : []);
  }

  /** The worker has stopped: what the cluster's `exit` event does. */
  exited(code: number): void {
    const s = this.slots[0]!;
    this.channel.close();
    s.worker = undefined;
    s.ready = false;
    s.load = undefined;
    this.emit("exit", 0, code, null, this.worker);
  }
}

/** Starts one worker in this process behind the primary's modules; both ports on 127.0.0.1, port 0. */
export async function startInProcess(opts: InProcessOptions = {}): Promise<TestServer> {
  // The worker shares its event loop with the test's own work (clients
  // encoding megabytes, other files' leftovers in the same test process), so
  // it sheds on lag only where a test asks for it.
  const env = testEnv({
    ...opts,
    env: { MAX_EVENT_LOOP_LAG_MS: "60000", MAX_PUSH_LAG_MS: "60000", ...opts.env, WORKERS: "1" },
  });
  // As main.ts: the primary fills in dev defaults (a generated JWT secret…), the worker reads them.
  const cfg = loadConfig(withDevDefaults(env, (n) => randomBytes(n).toString("base64url")).env);

  const log = outputLog();
  const recentLogs = createLogRing();
  const root = initLogger(
    loggerOptionsFrom(cfg, {}, (line) => {
      recentLogs.push(line);
      log.append(line.endsWith("\n") ? line : `${line}\n`);
    }),
  );
  const primaryLog = root.child({ role: "primary" });
  // Counters start from zero, as in a fresh process: this test process may
  // have run other servers before (test files share their processes).
  for (const r of [registry, primaryRegistry]) r.resetMetrics();
  startAlertCountersAtZero();
  // Each process registers its process metrics once; a later server in this
  // process (a test file may start several, one after the other) does again.
  const registered = [registry, primaryRegistry].map(
    (r) => [r, new Set(r.getMetricsAsArray().map((m) => m.name))] as const,
  );
  const unregister = () => {
    for (const [r, before] of registered) {
      for (const m of r.getMetricsAsArray()) if (!before.has(m.name)) r.removeSingleMetric(m.name);
    }
  };

  // The primary's side: the same core run-primary.ts runs (src/primary/primary-core.ts).
  const oneSup = new OneWorkerSupervisor();
  const sup = oneSup as unknown as Supervisor;
  const { host, deliveryStores, internal, metricsAggregator, dashboard, pushState } =
    createPrimaryCore({ cfg, sup, log: primaryLog, recentLogs });
  const balancer = createBalancer({
    log: primaryLog,
    eligibleSlots: () => (host.draining ? [] : sup.eligibleSlots()),
    liveSlots: () => sup.liveSlots(),
    handOff: (slot, port: PortKind, socket, head) =>
      sup.send(slot, { t: "ss:conn", port, head: head.toString("latin1") }, socket),
    serveLocally: (socket, head) => internal.serve(socket, head),
    isPrimaryPath,
    headerTimeoutMs: Math.min(10_000, cfg.HTTP_REQUEST_TIMEOUT_MS),
  });

  // The worker's side, as run-worker.ts builds it, with the in-memory adapter
  // (the cluster adapter talks to the primary over `process.send`).
  const worker = createWorker({
    cfg,
    log: root.child({ role: "worker", worker: 0 }),
    slot: 0,
    primary: createWorkerChannel(oneSup.port),
    recentLogs,
    adapter: Adapter,
  });
  await Promise.race([worker.start(), worker.stopped]);
  const ready = sup.slots[0]!.ready
    ? Promise.resolve()
    : new Promise<void>((resolve) => sup.once("ready", () => resolve()));
  await ready;
  // The public port is the worker's own: routing sessions between workers
  // is the cluster's subject (cluster.test.ts, balancer.test.ts).
  const publicPort = await new Promise<number>((resolve, reject) => {
    worker.publicServer.once("error", reject);
    worker.publicServer.listen(cfg.PORT, cfg.HOST, () => {
      const addr = worker.publicServer.address();
      resolve(typeof addr === "object" && addr ? addr.port : cfg.PORT);
    });
  });
  // The API port: a listening socket the primary holds, routed by its balancer.
  const apiListener = net.createServer();
  const apiPort = await new Promise<number>((resolve, reject) => {
    apiListener.once("error", reject);
    apiListener.listen(cfg.API_PORT, cfg.API_HOST ?? cfg.HOST, () => {
      const addr = apiListener.address();
      resolve(typeof addr === "object" && addr ? addr.port : cfg.API_PORT);
    });
  });
  balancer.attach("api", apiListener);
  host.listening = true;
  host.ports = { publicPort, apiPort };
  pushState();
  log.append(`${JSON.stringify({ msg: "ports", publicPort, apiPort })}\n`);

  let stopping: Promise<number> | undefined;
  const stop = (timeoutMs = 15_000): Promise<number> => {
    stopping ??= (async () => {
      // As the primary's shutdown: not ready, then the worker drains and stops.
      host.draining = true;
      pushState();
      dashboard.close();
      metricsAggregator.stop();
      const deadline = Math.min(timeoutMs, cfg.SHUTDOWN_TIMEOUT_MS);
      sup.send(0, { t: "ss:shutdown", timeoutMs: deadline });
      const code = await worker.stopped;
      oneSup.exited(code);
      await new Promise<void>((resolve) => apiListener.close(() => resolve()));
      deliveryStores.close();
      // A worker process would exit here: what it still holds is closed.
      for (const server of [worker.publicServer, worker.apiServer, internal.server]) {
        server.close();
        server.closeAllConnections();
      }
      worker.io.close();
      unregister();
      return code;
    })();
    return stopping;
  };

  const apiUrl = `http://127.0.0.1:${apiPort}`;
  return {
    worker,
    publicPort,
    apiPort,
    publicUrl: `http://127.0.0.1:${publicPort}`,
    apiUrl,
    output: log.text,
    waitForOutput: log.waitFor,
    api: apiFetch(apiUrl),
    stop,
  };
}

/** `useServer` for the one-process layer (`startInProcess`). */
export function useInProcessServer(opts: InProcessOptions = {}): TestServer {
  return useStarted(() => startInProcess(opts));
}
