import type { HistoryFrame } from "../../shared/events.js";

/**
 * Puts a history room's pushes back in offset order on their way to this
 * worker's sockets. Two workers (or hosts) that push to one room at once get
 * consecutive offsets from the sequencer, but their frames travel apart, so
 * offset 6 may arrive before 5. A frame past a gap waits until the gap is
 * filled, at most `waitMs`; then the frames held go out in order and the
 * gap is skipped (a push whose frame was lost: its sender died between the
 * append and the send, or Redis dropped it between hosts). A frame that
 * arrives after its gap was skipped still goes out, late, rather than not
 * at all; the client keeps the highest position it saw.
 */

interface RoomState {
  /** Unknown until the first frame or the join's read (`startAt`). */
  epoch: string | undefined;
  /** The last offset delivered in order; unknown while a join's read is pending. */
  last: number | undefined;
  held: Map<number, HistoryFrame>;
  timer: NodeJS.Timeout | undefined;
}

export interface RoomOrder {
  /** A frame arrived (from this worker or another). */
  receive(frame: HistoryFrame): void;
  /**
   * A socket joined a room this worker had no state for, and its read of the
   * room's position is on its way: frames that arrive meanwhile are held
   * until `startAt` says where the order starts (at most `waitMs`). The first
   * frame to arrive need not be the next one: another worker's push may
   * overtake it.
   */
  expect(room: string): void;
  /** A join read the room's position: where ordering starts when it was not known yet. */
  startAt(room: string, epoch: string, offset: number): void;
  /** The room has no socket here any more: forget it (after delivering what it holds). */
  forget(room: string): void;
  close(): void;
}

/** Frames held per room beyond which a gap is skipped at once. */
const MAX_HELD = 1_000;

export function createRoomOrder(deliver: (frame: HistoryFrame) => void, waitMs: number): RoomOrder {
  const rooms = new Map<string, RoomState>();

  const drain = (s: RoomState) => {
    if (s.last === undefined) return;
    for (let f = s.held.get(s.last + 1); f; f = s.held.get(s.last + 1)) {
      s.held.delete(f.offset);
      s.last = f.offset;
      deliver(f);
    }
    if (s.held.size === 0 && s.timer) {
      clearTimeout(s.timer);
      s.timer = undefined;
    }
  };
  const skipGap = (s: RoomState) => {
    if (s.timer) clearTimeout(s.timer);
    s.timer = undefined;
    if (s.held.size === 0) return;
    s.last = Math.min(...s.held.keys()) - 1;
    drain(s);
    if (s.held.size > 0) s.timer = setTimeout(() => skipGap(s), waitMs);
  };
  const flush = (s: RoomState) => {
    while (s.held.size > 0) skipGap(s);
  };
  const hold = (s: RoomState, f: HistoryFrame) => {
    s.held.set(f.offset, f);
    if (s.held.size > MAX_HELD) return skipGap(s);
    s.timer ??= setTimeout(() => skipGap(s), waitMs);
  };

  return {
    receive(f) {
      let s = rooms.get(f.room);
      if (s?.epoch !== undefined && s.epoch !== f.epoch) {
        flush(s);
        s = undefined;
      }
      if (!s) {
        s = { epoch: f.epoch, last: f.offset - 1, held: new Map(), timer: undefined };
        rooms.set(f.room, s);
      }
      s.epoch ??= f.epoch;
      if (s.last === undefined) return hold(s, f);
      if (f.offset <= s.last) return deliver(f);
      if (f.offset === s.last + 1) {
        s.held.set(f.offset, f);
        return drain(s);
      }
      hold(s, f);
    },
    expect(room) {
      if (!rooms.has(room)) {
        rooms.set(room, { epoch: undefined, last: undefined, held: new Map(), timer: undefined });
      }
    },
    startAt(room, epoch, offset) {
      const s = rooms.get(room);
      if (s && s.last !== undefined) return;
      if (s && s.epoch !== undefined && s.epoch !== epoch) flush(s);
      if (!s || s.held.size === 0) {
        if (s?.timer) clearTimeout(s.timer);
        rooms.set(room, { epoch, last: offset, held: new Map(), timer: undefined });
        return;
      }
      // Frames held while the read was on its way: those it covers go out
      // first (in order; the sockets that read them skip them), then the rest.
      s.epoch = epoch;
      const covered = [...s.held.keys()].filter((o) => o <= offset).sort((a, b) => a - b);
      for (const o of covered) {
        const f = s.held.get(o)!;
        s.held.delete(o);
        deliver(f);
      }
      s.last = offset;
      drain(s);
    },
    forget(room) {
      const s = rooms.get(room);
      if (!s) return;
      flush(s);
      if (s.timer) clearTimeout(s.timer);
      rooms.delete(room);
    },
    close() {
      for (const s of rooms.values()) if (s.timer) clearTimeout(s.timer);
      rooms.clear();
    },
  };
}
