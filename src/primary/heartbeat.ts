/**
 * Notices a worker that is alive but not answering (a blocked event loop, a
 * stopped process): the primary pings every watched worker each
 * `intervalMs`, the worker answers from its event loop, and a worker whose
 * last answer is older than `timeoutMs` (WORKER_HANG_TIMEOUT_MS) is reported
 * once through `onHung`. A worker is watched from the moment it says it is
 * ready, so that module loading at start is not taken for a hang.
 */

export interface HeartbeatOptions {
  intervalMs: number;
  timeoutMs: number;
  /** Sends a ping to the worker in this slot (false if it could not). */
  ping(slot: number, seq: number): void;
  onHung(slot: number, silentMs: number): void;
  now?: () => number;
}

export interface Heartbeat {
  /** Starts watching a slot's (new) worker. */
  watch(slot: number): void;
  /** The slot's worker is gone: stop watching it. */
  forget(slot: number): void;
  /** The slot's worker answered. */
  answered(slot: number): void;
  /** Milliseconds since each watched slot last answered. */
  silence(): Map<number, number>;
  stop(): void;
}

export function createHeartbeat(opts: HeartbeatOptions): Heartbeat {
  const now = opts.now ?? Date.now;
  const watched = new Map<number, { lastAnswer: number; reported: boolean }>();
  let seq = 0;

  const tick = () => {
    seq += 1;
    const t = now();
    for (const [slot, w] of watched) {
      const silent = t - w.lastAnswer;
      if (silent > opts.timeoutMs && !w.reported) {
        w.reported = true;
        opts.onHung(slot, silent);
      }
      if (!w.reported) opts.ping(slot, seq);
    }
  };
  const timer = setInterval(tick, opts.intervalMs);
  timer.unref();

  return {
    watch(slot) {
      watched.set(slot, { lastAnswer: now(), reported: false });
    },
    forget(slot) {
      watched.delete(slot);
    },
    answered(slot) {
      const w = watched.get(slot);
      if (w && !w.reported) w.lastAnswer = now();
    },
    silence() {
      const t = now();
      return new Map([...watched].map(([slot, w]) => [slot, t - w.lastAnswer]));
    },
    stop() {
      clearInterval(timer);
    },
  };
}
