import type { HistoryPosition, RoomOk, RoomPosition } from "../shared/events.js";

/**
 * The last position the client saw in each history room (the second
 * argument of their pushes, and the join acks), so that a re-join after a
 * reconnect asks for what it missed (`since`). Pushes of two workers may
 * overtake each other; the highest offset of the current epoch is kept.
 * A join the server could not recover (`recovered: false`) is reported to
 * the app, which should refetch the room's state.
 */

export interface RoomReset {
  room: string;
  /** The room's position now: the next push has a higher offset. Absent when the history was unreachable. */
  position?: HistoryPosition;
}

function isRoomPosition(v: unknown): v is RoomPosition {
  if (typeof v !== "object" || v === null) return false;
  const p = v as Partial<RoomPosition>;
  return typeof p.room === "string" && typeof p.epoch === "string" && typeof p.offset === "number";
}

export function createRoomPositions() {
  const last = new Map<string, HistoryPosition>();
  const listeners = new Set<(reset: RoomReset) => void>();

  const note = (room: string, p: HistoryPosition) => {
    const known = last.get(room);
    if (!known || known.epoch !== p.epoch || p.offset > known.offset) {
      last.set(room, { epoch: p.epoch, offset: p.offset });
    }
  };

  return {
    /** For `socket.onAny`: notes the position a push carries. */
    onPush(_event: string, ...args: unknown[]): void {
      const p = args[1];
      if (isRoomPosition(p)) note(p.room, p);
    },
    /** The `room:join` request: with `since` once a position is known. */
    joinRequest(room: string): { room: string; since?: HistoryPosition } {
      const since = last.get(room);
      return since ? { room, since } : { room };
    },
    /** A join's ack: starts tracking a history room, or reports a reset. */
    joined(room: string, ack: Partial<RoomOk>): void {
      if (ack.recovered === false) {
        if (ack.position) last.set(room, ack.position);
        else last.delete(room);
        const reset: RoomReset = { room, ...(ack.position ? { position: ack.position } : {}) };
        for (const l of listeners) {
          try {
            l(reset);
          } catch {
            // An app listener's bug must not break the re-join.
          }
        }
        return;
      }
      if (ack.position) note(room, ack.position);
    },
    left(room: string): void {
      last.delete(room);
    },
    position(room: string): HistoryPosition | undefined {
      return last.get(room);
    },
    onReset(listener: (reset: RoomReset) => void): () => void {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
  };
}
