import type { HistoryPosition } from "./events.js";

/**
 * The history of a room (HISTORY_ROOMS) as both stores keep it: the
 * primary's on a host without Redis (src/primary/room-history.ts), Redis
 * with it (src/worker/history/redis-history.ts). Each room has its own
 * epoch, made anew whenever its counter starts again (first push, history
 * expired, Redis flushed or failed over without the key), so a position of
 * an older life never matches.
 */

/** One kept push (payload as JSON text: compact, sized exactly). */
export interface HistoryEntry {
  offset: number;
  event: string;
  payloadJson: string;
}

/**
 * What a store answers a recovery from `since`: every entry after it, in
 * order, with the room's position now; or `recovered: false` when the
 * history no longer reaches back that far (HISTORY_SIZE, HISTORY_TTL_S),
 * the epoch differs, or `since` lies ahead of the counter.
 */
export type HistoryRead =
  | { recovered: true; position: HistoryPosition; entries: HistoryEntry[] }
  | { recovered: false; position: HistoryPosition };

/** A push to several rooms gets one position per room, in the order given. */
export interface HistoryAppend {
  rooms: string[];
  event: string;
  payloadJson: string;
}

/** Is this a position a client may send (`room:join` `since`)? */
export function isHistoryPosition(v: unknown): v is HistoryPosition {
  if (typeof v !== "object" || v === null) return false;
  const { epoch, offset } = v as { epoch?: unknown; offset?: unknown };
  return (
    typeof epoch === "string" &&
    epoch.length > 0 &&
    epoch.length <= 64 &&
    Number.isSafeInteger(offset) &&
    (offset as number) >= 0
  );
}

/**
 * How long a silent room keeps its counter and epoch (its pushes expire
 * after the TTL): a day at least, so that a client of a quiet room need not
 * refetch; past it the room starts a new epoch.
 */
export const counterKeepMs = (ttlMs: number): number => Math.max(ttlMs, 86_400_000);
