import type { Logger } from "pino";
import type { HistoryPosition } from "../../shared/events.js";
import type { HistoryAppend, HistoryRead } from "../../shared/history.js";
import type { WorkerChannel } from "../ipc-channel.js";

/**
 * Where history rooms get their positions and keep their pushes: the
 * primary's sequencer (one host), or Redis (every host) with the primary's
 * as a fallback while Redis is unreachable.
 */
export interface HistoryStore {
  /** Which store gave the positions (for the metrics). */
  readonly kind: "host" | "redis";
  /** One position per room, in order; the pushes are kept. */
  append(req: HistoryAppend): Promise<{ positions: HistoryPosition[]; store: "host" | "redis" }>;
  /** Every push after `since` (or only the position, without it). */
  read(room: string, since?: HistoryPosition): Promise<HistoryRead>;
  close(): Promise<void>;
}

export function createPrimaryHistory(
  primary: Pick<WorkerChannel, "call">,
  timeoutMs: number,
): HistoryStore {
  return {
    kind: "host",
    async append(req) {
      const { positions } = await primary.call("ss:history-append", req, timeoutMs);
      return { positions, store: "host" };
    },
    read: (room, since) =>
      primary.call("ss:history-read", since ? { room, since } : { room }, timeoutMs),
    close: async () => {},
  };
}

/**
 * Redis first; while it fails, the host's store. The host's rooms have
 * epochs of their own, so a client that recovers across the switch learns
 * it has to refetch. A room pushed here while Redis was down is marked, and
 * its next push in Redis starts a new epoch there: the pushes this host
 * kept for itself are not in Redis's history, and a client of another host
 * must not recover past them as if nothing had happened.
 */
export function withHistoryFallback(
  main: HistoryStore & {
    append(req: HistoryAppend, fresh?: boolean): ReturnType<HistoryStore["append"]>;
  },
  local: HistoryStore,
  log: Logger,
): HistoryStore {
  const diverged = new Set<string>();
  let lastWarn = 0;
  const warn = (err: unknown, op: string) => {
    if (Date.now() - lastWarn < 10_000) return;
    lastWarn = Date.now();
    log.warn({ err, op }, "redis history unreachable; using this host's sequencer");
  };
  return {
    kind: "redis",
    async append(req) {
      const fresh = req.rooms.some((r) => diverged.has(r));
      try {
        const r = await main.append(req, fresh);
        for (const room of req.rooms) diverged.delete(room);
        return r;
      } catch (err) {
        warn(err, "append");
        for (const room of req.rooms) diverged.add(room);
        return local.append(req);
      }
    },
    async read(room, since) {
      try {
        return await main.read(room, since);
      } catch (err) {
        warn(err, "read");
        return local.read(room, since);
      }
    },
    async close() {
      await Promise.allSettled([main.close(), local.close()]);
    },
  };
}
