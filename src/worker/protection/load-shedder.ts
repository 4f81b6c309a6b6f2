import { performance } from "node:perf_hooks";

/**
 * Decides whether this worker takes new work: over MAX_CONNECTIONS_PER_WORKER
 * or MAX_EVENT_LOOP_LAG_MS, new handshakes get OVERLOADED; over
 * MAX_PUSH_LAG_MS, pushes get 503. Sockets already connected are kept.
 *
 * Pushes have their own, higher limit: a refused handshake costs the client
 * a retry with backoff, a refused push costs the backend a retry or the
 * message. A fan-out at a rate the box only just takes (each broadcast to
 * thousands of sockets holds the loop for tens of milliseconds) runs a lag
 * of several hundred milliseconds while it delivers everything (the docs'
 * cluster recipe takes that load with no refusal: bench/RESULTS.md). Pushes
 * are refused when the loop falls seconds behind: a load nobody can take.
 *
 * The lag p99 reported once a second reacts a second late. A stalled loop is
 * also caught by a drift probe: a timer every PROBE_MS that measures how late
 * it fired. Timers run before I/O in each loop turn, so after a stall the
 * probe marks the worker overloaded before the handshakes that queued up
 * during the stall are read, and it stays so for HOLD_MS.
 */

export type ShedReason = "connections" | "event_loop_lag";

export interface LoadShedder {
  /**
   * Why new work would be refused now, or undefined. `admitting`: called for
   * a handshake in progress, whose own connection is already counted.
   */
  reason(admitting?: boolean): ShedReason | undefined;
  /** Whether a push would be refused now (MAX_PUSH_LAG_MS). */
  shedsPushes(): boolean;
  overloaded(): boolean;
  /**
   * Forgets the time before the worker serves: a slow start-up (module
   * loading on a busy host) is not a stall, and counted as one it refused
   * the first pushes after /ready (503 for a second).
   */
  forgetStartUp(): void;
  close(): void;
}

const PROBE_MS = 100;
const HOLD_MS = 1_000;

export function createLoadShedder(deps: {
  maxConnections: number;
  maxLagMs: number;
  maxPushLagMs: number;
  connections: () => number;
  /** Event-loop delay p99 over the last reporting interval, ms. */
  lagP99Ms: () => number;
}): LoadShedder {
  let expected = performance.now() + PROBE_MS;
  let stalledUntil = 0;
  let pushStalledUntil = 0;
  const probe = setInterval(() => {
    const now = performance.now();
    const drift = now - expected;
    expected = now + PROBE_MS;
    if (drift > deps.maxLagMs) stalledUntil = now + HOLD_MS;
    if (drift > deps.maxPushLagMs) pushStalledUntil = now + HOLD_MS;
  }, PROBE_MS);
  probe.unref();

  const reason = (admitting = false): ShedReason | undefined => {
    if (deps.connections() - (admitting ? 1 : 0) >= deps.maxConnections) return "connections";
    if (deps.lagP99Ms() > deps.maxLagMs || performance.now() < stalledUntil) {
      return "event_loop_lag";
    }
    return undefined;
  };
  return {
    reason,
    shedsPushes: () => deps.lagP99Ms() > deps.maxPushLagMs || performance.now() < pushStalledUntil,
    overloaded: () => reason() !== undefined,
    forgetStartUp() {
      expected = performance.now() + PROBE_MS;
      stalledUntil = 0;
      pushStalledUntil = 0;
    },
    close: () => clearInterval(probe),
  };
}
