import type { Config } from "../../shared/config.js";

export type ForwardBudgetLimits = Pick<
  Config,
  "FORWARD_MAX_PENDING_BYTES_PER_SOCKET" | "FORWARD_MAX_PENDING_BYTES_PER_WORKER"
>;

/** `release` gives the bytes back; calling it again does nothing. */
export type BudgetTake =
  | { ok: true; release: () => void }
  | { ok: false; over: "socket" | "worker" };

export interface ForwardBudget {
  /** Reserves `bytes` for `socketId`, or says which limit they would exceed. */
  take(socketId: string, bytes: number): BudgetTake;
  /** Bytes reserved on this worker. */
  readonly bytes: number;
  /** Sockets holding bytes. */
  readonly sockets: number;
  /** Bytes reserved by one socket. */
  bytesOf(socketId: string): number;
}

/**
 * Bytes of client events waiting on the backend (running, queued or between
 * retries), per socket and per worker. Without it a stalled backend lets
 * BACKEND_MAX_CONCURRENCY + BACKEND_MAX_QUEUE events of up to
 * MAX_PAYLOAD_BYTES each pile up in a worker: more than a gigabyte. An event
 * that would take its socket or the worker past its limit is refused before
 * anything is kept of it.
 *
 * The size is the forwarded body's, measured once by the transport that
 * serialised it. A socket's entry is deleted when its count drops to 0, so
 * sockets that come and go leave nothing behind.
 */
export function createForwardBudget(limits: ForwardBudgetLimits): ForwardBudget {
  const perSocket = limits.FORWARD_MAX_PENDING_BYTES_PER_SOCKET;
  const perWorker = limits.FORWARD_MAX_PENDING_BYTES_PER_WORKER;
  const bySocket = new Map<string, number>();
  let total = 0;

  const give = (socketId: string, bytes: number) => {
    total -= bytes;
    const left = (bySocket.get(socketId) ?? 0) - bytes;
    if (left > 0) bySocket.set(socketId, left);
    else bySocket.delete(socketId);
  };

  return {
    take(socketId, bytes) {
      const mine = bySocket.get(socketId) ?? 0;
      if (mine + bytes > perSocket) return { ok: false, over: "socket" };
      if (total + bytes > perWorker) return { ok: false, over: "worker" };
      bySocket.set(socketId, mine + bytes);
      total += bytes;
      let held = true;
      return {
        ok: true,
        release: () => {
          if (!held) return;
          held = false;
          give(socketId, bytes);
        },
      };
    },
    get bytes() {
      return total;
    },
    get sockets() {
      return bySocket.size;
    },
    bytesOf: (socketId) => bySocket.get(socketId) ?? 0,
  };
}
