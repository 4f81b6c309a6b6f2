import { randomBytes } from "node:crypto";
import type { HistoryPosition } from "../shared/events.js";
import {
  counterKeepMs,
  type HistoryAppend,
  type HistoryEntry,
  type HistoryRead,
} from "../shared/history.js";
import type { IpcHub } from "./ipc-hub.js";

/**
 * The history rooms' sequencer and history on a host without Redis: the
 * primary outlives every worker, and every worker asks it
 * (`ss:history-append`), so each room has one ordered counter for the whole
 * host. A room's epoch is made when its counter starts (its first push, or
 * the first after it expired); a primary restart starts every room anew, so
 * no position of before can match.
 *
 * Bounds: HISTORY_SIZE entries per room (the oldest go first), each kept
 * HISTORY_TTL_S. The counter and epoch outlive the entries (counterKeepMs,
 * as in Redis), so a client of a quiet room does not have to refetch; a
 * room silent for longer than that is forgotten, and starts a new epoch.
 */

interface Room {
  epoch: string;
  offset: number;
  /** The kept entries from `first` on, oldest first; `at` is when each was pushed. */
  entries: (HistoryEntry & { at: number })[];
  first: number;
  lastPushAt: number;
}

export interface RoomHistoryLimits {
  size: number;
  ttlMs: number;
}

const newEpoch = () => randomBytes(6).toString("base64url");

export class RoomHistory {
  private readonly rooms = new Map<string, Room>();

  constructor(
    private readonly limits: RoomHistoryLimits,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.rooms.size;
  }

  append(req: HistoryAppend): HistoryPosition[] {
    const at = this.now();
    return req.rooms.map((name) => {
      const room = this.room(name, at);
      room.offset += 1;
      room.lastPushAt = at;
      room.entries.push({
        offset: room.offset,
        event: req.event,
        payloadJson: req.payloadJson,
        at,
      });
      if (room.entries.length - room.first > this.limits.size) room.first += 1;
      // Copying now and then keeps the trim O(1) per push.
      if (room.first >= this.limits.size) {
        room.entries = room.entries.slice(room.first);
        room.first = 0;
      }
      return { epoch: room.epoch, offset: room.offset };
    });
  }

  /** Without `since`: only the position (a plain join). */
  read(name: string, since?: HistoryPosition): HistoryRead {
    const at = this.now();
    const room = this.room(name, at);
    const position = { epoch: room.epoch, offset: room.offset };
    if (!since || since.epoch !== room.epoch || since.offset > room.offset) {
      return { recovered: false, position };
    }
    const want = room.offset - since.offset;
    if (want === 0) return { recovered: true, position, entries: [] };
    // The first entry the client lacks must still be kept and not expired.
    const from = room.entries.length - want;
    if (from < room.first || room.entries[from]!.at <= at - this.limits.ttlMs) {
      return { recovered: false, position };
    }
    const entries = room.entries
      .slice(from)
      .map(({ offset, event, payloadJson }) => ({ offset, event, payloadJson }));
    return { recovered: true, position, entries };
  }

  /** Drops expired entries, and forgets rooms silent past counterKeepMs; returns how many. */
  sweep(): number {
    const at = this.now();
    const expired = at - this.limits.ttlMs;
    let n = 0;
    for (const [name, room] of this.rooms) {
      if (room.lastPushAt <= at - counterKeepMs(this.limits.ttlMs)) {
        this.rooms.delete(name);
        n += 1;
      } else if (room.lastPushAt <= expired && room.entries.length > 0) {
        room.entries = [];
        room.first = 0;
      }
    }
    return n;
  }

  private room(name: string, at: number): Room {
    let room = this.rooms.get(name);
    if (!room || room.lastPushAt <= at - counterKeepMs(this.limits.ttlMs)) {
      room = { epoch: newEpoch(), offset: 0, entries: [], first: 0, lastPushAt: at };
      this.rooms.set(name, room);
    }
    return room;
  }
}

const SWEEP_INTERVAL_MS = 10_000;

/** Answers the workers' history calls; returns a stop function. */
export function attachRoomHistory(deps: { ipc: IpcHub; limits: RoomHistoryLimits }): () => void {
  const history = new RoomHistory(deps.limits);
  deps.ipc.answer("ss:history-append", (_slot, req) => ({ positions: history.append(req) }));
  deps.ipc.answer("ss:history-read", (_slot, req) => history.read(req.room, req.since));
  const sweep = setInterval(() => history.sweep(), SWEEP_INTERVAL_MS);
  sweep.unref();
  return () => clearInterval(sweep);
}
