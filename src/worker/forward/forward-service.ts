import { performance } from "node:perf_hooks";
import { type AckError, ackError } from "../../shared/errors.js";
import { metrics } from "../../shared/metrics.js";
import type { ForwardedEvent, Forwarder, ForwardReply } from "./backend-contract.js";
import type { ForwardBudget } from "./forward-budget.js";

/** What `/api/status` shows about forwarding, per worker. */
export interface ForwardStatus {
  transport: "http" | "redis-stream" | "disabled";
  /** Circuit breaker toward the backend; null where there is none. */
  breaker: BreakerState | null;
  /** Forwards accepted and not answered yet (running or queued). */
  inFlight: number;
  [extra: string]: unknown;
}

export type BreakerState = "closed" | "half-open" | "open";

/**
 * A forwarder the worker owns: it reports its state and is shut down in two
 * steps, so that the `disconnect` lifecycle events of the sockets a shutdown
 * closes still reach the backend:
 *   drain: client events are refused (SHUTTING_DOWN), those in flight finish;
 *   close: lifecycle events are refused too, the rest finish, the pool closes.
 */
export interface ForwardService extends Forwarder {
  /** `connect` / `disconnect` of a registered user; still taken while draining. */
  forwardLifecycle(e: ForwardedEvent): Promise<ForwardReply>;
  status(): ForwardStatus;
  /** True when everything in flight finished within `timeoutMs`. */
  drain(timeoutMs: number): Promise<boolean>;
  close(timeoutMs: number): Promise<void>;
}

export type ForwardKind = "client" | "lifecycle";

/**
 * One forward as the tracker sees it. A client event holds `bytes` (the size
 * of what the transport serialised) of its socket's and the worker's budget
 * until it settles; lifecycle events are a few hundred bytes, one or two per
 * socket, and stay outside the budget.
 */
export type ForwardJob =
  | { kind: "client"; socketId: string; bytes: number }
  | { kind: "lifecycle" };

/** The job for event `e` of `kind`, serialised into `bytes`. */
export function forwardJob(kind: ForwardKind, e: ForwardedEvent, bytes: number): ForwardJob {
  return kind === "client" ? { kind, socketId: e.socketId, bytes } : { kind };
}

/**
 * Counts, times and remembers every forward, for metrics, for the byte
 * budget and for the drain at shutdown. Each transport runs its work through `run`.
 */
export function createForwardTracker(budget: ForwardBudget) {
  const pending = new Set<Promise<ForwardReply>>();
  let state: "open" | "draining" | "closed" = "open";

  const record = (reply: ForwardReply, startedAt: number): ForwardReply => {
    metrics.forwards.inc({ outcome: reply.ok ? "ok" : reply.error.code.toLowerCase() });
    metrics.forwardLatency.observe((performance.now() - startedAt) / 1000);
    return reply;
  };

  function refuse(reply: AckError): Promise<ForwardReply> {
    metrics.forwards.inc({ outcome: reply.error.code.toLowerCase() });
    return Promise.resolve(reply);
  }

  return {
    get inFlight(): number {
      return pending.size;
    },
    get state() {
      return state;
    },
    /** Client event bytes held until their forwards settle. */
    get pendingBytes(): number {
      return budget.bytes;
    },
    /** Answers at once without forwarding (bad payload, full queue), counted by outcome. */
    refuse,
    /**
     * `work` must not throw for expected failures; a throw is answered
     * BACKEND_UNAVAILABLE. A client event over its socket's or the worker's
     * byte budget is answered OVERLOADED without running `work`.
     */
    run(job: ForwardJob, work: () => Promise<ForwardReply>, onUnexpected: (err: unknown) => void) {
      const startedAt = performance.now();
      if (state === "closed" || (state === "draining" && job.kind === "client")) {
        return Promise.resolve(record(ackError("SHUTTING_DOWN"), startedAt));
      }
      let release: (() => void) | undefined;
      if (job.kind === "client") {
        const taken = budget.take(job.socketId, job.bytes);
        if (!taken.ok) return refuse(OVER_BUDGET[taken.over]);
        release = taken.release;
      }
      metrics.forwardInFlight.inc();
      const p: Promise<ForwardReply> = work()
        .catch((err: unknown) => {
          onUnexpected(err);
          return ackError("BACKEND_UNAVAILABLE");
        })
        .then((reply) => record(reply, startedAt))
        .finally(() => {
          release?.();
          pending.delete(p);
          metrics.forwardInFlight.dec();
        });
      pending.add(p);
      return p;
    },
    /**
     * Stops accepting client events (`to: "draining"`) or everything
     * (`to: "closed"`); true when everything in flight settled within `timeoutMs`.
     */
    async settle(to: "draining" | "closed", timeoutMs: number): Promise<boolean> {
      if (state !== "closed") state = to;
      if (pending.size === 0) return true;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      const settled = Promise.allSettled([...pending]).then(() => true as const);
      const done = await Promise.race([settled, timedOut]);
      clearTimeout(timer);
      return done;
    },
  };
}

const OVER_BUDGET = {
  socket: ackError("OVERLOADED", "too much of this socket's data is waiting for the backend", {
    retryAfter: 1,
  }),
  worker: ackError("OVERLOADED", "too much data is waiting for the backend", { retryAfter: 1 }),
};

export type ForwardTracker = ReturnType<typeof createForwardTracker>;
