import { performance } from "node:perf_hooks";
import { type AckError, ackError } from "../../shared/errors.js";
import { metrics } from "../../shared/metrics.js";
import type { ForwardedEvent, Forwarder, ForwardReply } from "../gateway.js";

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
 * Counts, times and remembers every forward, for metrics and for the drain at
 * shutdown. Each transport runs its work through `run`.
 */
export function createForwardTracker() {
  const pending = new Set<Promise<ForwardReply>>();
  let state: "open" | "draining" | "closed" = "open";

  const record = (reply: ForwardReply, startedAt: number): ForwardReply => {
    metrics.forwards.inc({ outcome: reply.ok ? "ok" : reply.error.code.toLowerCase() });
    metrics.forwardLatency.observe((performance.now() - startedAt) / 1000);
    return reply;
  };

  return {
    get inFlight(): number {
      return pending.size;
    },
    get state() {
      return state;
    },
    /** Answers at once without forwarding (bad payload, full queue), counted by outcome. */
    refuse(reply: AckError): Promise<ForwardReply> {
      metrics.forwards.inc({ outcome: reply.error.code.toLowerCase() });
      return Promise.resolve(reply);
    },
    /** `work` must not throw for expected failures; a throw is answered BACKEND_UNAVAILABLE. */
    run(
      kind: ForwardKind,
      work: () => Promise<ForwardReply>,
      onUnexpected: (err: unknown) => void,
    ) {
      const startedAt = performance.now();
      if (state === "closed" || (state === "draining" && kind === "client")) {
        return Promise.resolve(record(ackError("SHUTTING_DOWN"), startedAt));
      }
      metrics.forwardInFlight.inc();
      const p: Promise<ForwardReply> = work()
        .catch((err: unknown) => {
          onUnexpected(err);
          return ackError("BACKEND_UNAVAILABLE");
        })
        .then((reply) => record(reply, startedAt))
        .finally(() => {
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

export type ForwardTracker = ReturnType<typeof createForwardTracker>;
