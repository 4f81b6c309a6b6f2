import cluster, { type Worker } from "node:cluster";
import { EventEmitter } from "node:events";
import { Socket } from "node:net";
import type { Logger } from "pino";
import type {
  PrimaryToWorker,
  ReplacedWorker,
  WorkerLoad,
  WorkerToPrimary,
} from "../shared/ipc.js";
import { isWorkerToPrimary } from "../shared/ipc.js";
import type { Handle } from "../shared/ipc-rpc.js";

/**
 * Forks one worker per slot and keeps each slot filled: a worker that exits
 * unexpectedly is replaced after a backoff that doubles with every crash in
 * a row (reset once a worker has stayed up for `stableAfterMs`). A slot that
 * crashes `maxCrashes` times in a row makes the supervisor give up loudly:
 * it emits "crash-loop" and the primary exits non-zero.
 */

export interface SlotState {
  slot: number;
  worker: Worker | undefined;
  ready: boolean;
  load: WorkerLoad | undefined;
  startedAt: number;
  crashes: number;
  restarts: number;
  restartTimer: NodeJS.Timeout | undefined;
  /** Taken out of rotation for not answering the heartbeat; being killed. */
  hung: boolean;
}

export interface SupervisorOptions {
  workers: number;
  env: Record<string, string | undefined>;
  log: Logger;
  /** WORKER_RESTART_BACKOFF_BASE_MS / _MAX_MS and WORKER_MAX_CRASHES (the config's defaults). */
  backoffBaseMs: number;
  backoffMaxMs: number;
  maxCrashes: number;
  /** A worker up this long is stable: its next crash starts the backoff again. */
  stableAfterMs?: number;
}

export interface SupervisorEvents {
  /** `handle`: the socket an `ss:relay` carries, the listening socket an `ss:unlisten` carries. */
  message: [slot: number, msg: WorkerToPrimary, worker: Worker, handle: Handle | undefined];
  /** The slot's worker is asked to stop (rolling restart) or killed (hung): out of rotation. */
  retiring: [slot: number];
  ready: [slot: number];
  exit: [slot: number, code: number | null, signal: string | null, worker: Worker];
  "all-ready": [];
  "crash-loop": [slot: number];
}

export class Supervisor extends EventEmitter<SupervisorEvents> {
  readonly slots: SlotState[];
  private stopping = false;
  /** Workers asked to exit by a rolling restart: their exit is not a crash. */
  private readonly retiring = new Set<Worker>();
  /** Workers killed because they hung: replaced at once, not counted as crashes. */
  private readonly hungWorkers = new Set<Worker>();
  /** The hung workers replaced so far, newest last (at most 20 kept). */
  readonly replaced: ReplacedWorker[] = [];
  private rolling = false;
  private allReadyOnce = false;
  private readonly opts: SupervisorOptions & { stableAfterMs: number };

  constructor(opts: SupervisorOptions) {
    super();
    this.opts = { stableAfterMs: 30_000, ...opts };
    this.slots = Array.from({ length: opts.workers }, (_, slot) => ({
      slot,
      worker: undefined,
      ready: false,
      load: undefined,
      startedAt: 0,
      crashes: 0,
      restarts: 0,
      restartTimer: undefined,
      hung: false,
    }));
  }

  start(): void {
    for (const s of this.slots) this.fork(s);
  }

  private fork(s: SlotState): void {
    const worker = cluster.fork({ ...this.opts.env, SS_SLOT: String(s.slot) });
    s.worker = worker;
    s.ready = false;
    s.hung = false;
    s.load = undefined;
    s.startedAt = Date.now();
    worker.on("message", (msg: unknown, handle?: unknown) => {
      if (!isWorkerToPrimary(msg)) {
        // A handle nobody will route would stay open.
        if (handle instanceof Socket) handle.destroy();
        return;
      }
      if (msg.t === "ss:ready") {
        s.ready = true;
        this.emit("ready", s.slot);
        if (!this.allReadyOnce && this.slots.every((x) => x.ready)) {
          this.allReadyOnce = true;
          this.emit("all-ready");
        }
      } else if (msg.t === "ss:load") {
        s.load = msg.load;
      }
      // To the primary's IPC hub (src/primary/ipc-hub.ts), its one listener.
      this.emit("message", s.slot, msg, worker, handle as Handle | undefined);
    });
    worker.on("error", (err) => this.opts.log.warn({ err, slot: s.slot }, "worker channel error"));
    worker.on("exit", (code, signal) => this.onExit(s, worker, code, signal));
  }

  private onExit(s: SlotState, worker: Worker, code: number | null, signal: string | null): void {
    if (s.worker !== worker) return;
    s.worker = undefined;
    s.ready = false;
    s.load = undefined;
    this.emit("exit", s.slot, code, signal, worker);
    if (this.stopping) return;
    if (this.retiring.delete(worker)) {
      this.fork(s);
      return;
    }
    if (this.hungWorkers.delete(worker)) {
      s.restarts += 1;
      this.fork(s);
      return;
    }
    const upFor = Date.now() - s.startedAt;
    s.crashes = upFor >= this.opts.stableAfterMs ? 1 : s.crashes + 1;
    if (s.crashes > this.opts.maxCrashes) {
      this.opts.log.fatal(
        { slot: s.slot, code, signal, crashes: s.crashes },
        "worker is crashing in a loop; giving up",
      );
      this.emit("crash-loop", s.slot);
      return;
    }
    const delay = Math.min(
      this.opts.backoffMaxMs,
      this.opts.backoffBaseMs * 2 ** Math.max(0, s.crashes - 1),
    );
    this.opts.log.error(
      { slot: s.slot, pid: worker.process.pid, code, signal, upForMs: upFor, restartInMs: delay },
      "worker exited unexpectedly; restarting",
    );
    s.restartTimer = setTimeout(() => {
      s.restartTimer = undefined;
      if (this.stopping) return;
      s.restarts += 1;
      this.fork(s);
    }, delay);
  }

  /**
   * The worker in `slot` stopped answering the heartbeat (a blocked event
   * loop, a stopped process): it gets no request of a session it owns (it is
   * not live) and is killed at once; its exit forks a replacement at once.
   * SIGKILL, not SIGTERM with a grace: the worker accepts connections on its
   * own listening socket of the public port (SO_REUSEPORT), and the kernel
   * keeps giving it its share of new ones until the process is gone; a stopped or blocked
   * process could not act on SIGTERM anyway. Resolves once it is gone (its
   * listening sockets with it).
   */
  replaceHung(slot: number, silentMs: number): Promise<void> {
    const s = this.slots[slot];
    const worker = s?.worker;
    if (!s || !worker || s.hung || this.stopping) return Promise.resolve();
    s.hung = true;
    s.ready = false;
    this.hungWorkers.add(worker);
    this.replaced.push({
      worker: slot,
      pid: worker.process.pid,
      reason: "hung",
      silentMs,
      at: new Date().toISOString(),
    });
    if (this.replaced.length > 20) this.replaced.shift();
    this.emit("retiring", slot);
    const gone = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    worker.process.kill("SIGKILL");
    return gone;
  }

  /** A sent net.Socket is closed here once the worker has it; a sent listening socket stays open. */
  send(slot: number, msg: PrimaryToWorker, handle?: Handle): boolean {
    const w = this.slots[slot]?.worker;
    if (!w?.isConnected()) return false;
    try {
      if (handle) {
        w.send(msg, handle, (err: Error | null) => {
          if (err && handle instanceof Socket) handle.destroy();
        });
      } else {
        w.send(msg);
      }
      return true;
    } catch {
      return false;
    }
  }

  broadcast(msg: PrimaryToWorker): void {
    for (const s of this.slots) if (s.worker) this.send(s.slot, msg);
  }

  readySlots(): number[] {
    return this.slots
      .filter((s) => s.ready && !s.hung && s.worker?.isConnected())
      .map((s) => s.slot);
  }

  /** Ready and not overloaded; falls back to every ready slot if all are loaded. */
  eligibleSlots(): number[] {
    const fresh = this.acceptingSlots();
    return fresh.length > 0 ? fresh : this.readySlots();
  }

  /** Ready and not overloaded (by the last load reports). */
  acceptingSlots(): number[] {
    return this.slots
      .filter((s) => s.ready && !s.hung && !s.load?.overloaded && s.worker?.isConnected())
      .map((s) => s.slot);
  }

  liveSlots(): Set<number> {
    return new Set(this.slots.filter((s) => !s.hung && s.worker?.isConnected()).map((s) => s.slot));
  }

  /** True while a rolling restart runs. */
  get restarting(): boolean {
    return this.rolling;
  }

  /**
   * Rolling restart: one slot at a time, the worker is drained (it refuses new
   * work, finishes what is in flight, tells its clients to reconnect, which
   * takes them to the other workers), then a new one is forked for the slot,
   * and the next slot waits until it is ready. The host keeps serving
   * throughout. False if one is already running or the host is stopping.
   */
  async rollingRestart(drainTimeoutMs: number, readyTimeoutMs = 30_000): Promise<boolean> {
    if (this.rolling || this.stopping) return false;
    this.rolling = true;
    try {
      for (const s of this.slots) {
        if (this.stopping) return false;
        const old = s.worker;
        if (!old || !s.ready) continue;
        const ready = new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => {
            this.off("ready", onReady);
            resolve(false);
          }, drainTimeoutMs + readyTimeoutMs);
          const onReady = (slot: number) => {
            if (slot !== s.slot || s.worker === old) return;
            clearTimeout(timer);
            this.off("ready", onReady);
            resolve(true);
          };
          this.on("ready", onReady);
        });
        this.retiring.add(old);
        // Not ready from now: new sessions go to the other workers.
        s.ready = false;
        this.emit("retiring", s.slot);
        const kill = setTimeout(() => old.process.kill("SIGKILL"), drainTimeoutMs + 1_000);
        old.once("exit", () => clearTimeout(kill));
        try {
          old.send({ t: "ss:shutdown", timeoutMs: drainTimeoutMs } satisfies PrimaryToWorker);
        } catch {
          old.process.kill("SIGTERM");
        }
        this.opts.log.info({ slot: s.slot, pid: old.process.pid }, "rolling restart: draining");
        if (!(await ready)) {
          this.opts.log.error({ slot: s.slot }, "rolling restart: new worker not ready; stopped");
          return false;
        }
        this.opts.log.info({ slot: s.slot, pid: s.worker?.process.pid }, "rolling restart: ready");
      }
      return true;
    } finally {
      this.rolling = false;
    }
  }

  /** Stops restarting, asks every worker to exit, kills the ones still there at the deadline. */
  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    for (const s of this.slots) if (s.restartTimer) clearTimeout(s.restartTimer);
    const live = this.slots.map((s) => s.worker).filter((w): w is Worker => w !== undefined);
    const exits = live.map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.isDead()) return resolve();
          w.once("exit", () => resolve());
        }),
    );
    for (const w of live) {
      try {
        w.send({ t: "ss:shutdown", timeoutMs } satisfies PrimaryToWorker);
      } catch {
        w.process.kill("SIGTERM");
      }
    }
    const timer = setTimeout(() => {
      for (const w of live) if (!w.isDead()) w.process.kill("SIGKILL");
    }, timeoutMs);
    await Promise.all(exits);
    clearTimeout(timer);
  }
}
