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
  epoch: string;
  /** The last offset delivered in order. */
  last: number;
  held: Map<number, HistoryFrame>;
  timer: NodeJS.Timeout | undefined;
}

export interface RoomOrder {
  /** A frame arrived (from this worker or another). */
  receive(frame: HistoryFrame): void;
  /** A join read the room's position: where ordering starts when nothing was seen yet. */
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

  return {
    receive(f) {
      let s = rooms.get(f.room);
      if (s && s.epoch !== f.epoch) {
        flush(s);
        s = undefined;
      }
      if (!s) {
        s = { epoch: f.epoch, last: f.offset - 1, held: new Map(), timer: undefined };
        rooms.set(f.room, s);
      }
      if (f.offset <= s.last) return deliver(f);
      s.held.set(f.offset, f);
      if (f.offset === s.last + 1) return drain(s);
      if (s.held.size > MAX_HELD) return skipGap(s);
      const state = s;
      s.timer ??= setTimeout(() => skipGap(state), waitMs);
    },
    startAt(room, epoch, offset) {
      if (!rooms.has(room)) {
        rooms.set(room, { epoch, last: offset, held: new Map(), timer: undefined });
      }
    },
    forget(room) {
      const s = rooms.get(room);
      if (!s) return;
      flush(s);
      rooms.delete(room);
    },
    close() {
      for (const s of rooms.values()) if (s.timer) clearTimeout(s.timer);
      rooms.clear();
    },
  };
}
