import type { Logger } from "pino";
import type { PresenceChange, PresenceNotices } from "../shared/ipc.js";
import type { IpcHub } from "./ipc-hub.js";
import type { Supervisor } from "./supervisor.js";

/**
 * Presence in rooms (PRESENCE_ROOMS) on a host without Redis: who is in each
 * presence room, per user, whichever workers hold the user's sockets.
 *
 * Each worker reports when a user's first socket on it enters a presence
 * room and when its last one leaves (`ss:presence`, src/worker/live-rooms/
 * room-presence.ts). A user is present while some worker holds them; the
 * first worker makes a `presence:join`. When the last one lets go, the user
 * stays listed for `PRESENCE_LEAVE_DELAY_MS` and only then leaves
 * (`presence:leave`): a reload, or a tab that moves to another worker, comes
 * back within it and is no leave. A worker that exits lets go of all its
 * users at once, so a crash is a leave after the same delay.
 *
 * The primary never touches a socket: it sends each notice to one worker
 * (`ss:presence-notice`), whose room emit the cluster adapter carries to the
 * others. With Redis this state lives in Redis instead (redis-presence.ts).
 */

interface Present {
  /** Workers holding a socket of the user in the room. */
  slots: Set<number>;
  /** Set while nobody holds the user: the leave, due after the delay. */
  leaving?: NodeJS.Timeout;
}

export interface RoomPresence {
  /** How many users are present in each of these rooms (the dashboard). */
  counts(rooms: readonly string[]): Record<string, number>;
  close(): void;
}

export function attachRoomPresence(deps: {
  ipc: Pick<IpcHub, "on" | "answer" | "send">;
  sup: Pick<Supervisor, "on" | "readySlots">;
  leaveDelayMs: number;
  log: Logger;
}): RoomPresence {
  const { ipc, sup } = deps;
  const log = deps.log.child({ module: "room-presence" });
  const rooms = new Map<string, Map<string, Present>>();

  /** To the worker that caused them when it can still emit, else to any ready one. */
  const emit = (notices: PresenceNotices, preferred?: number) => {
    const ready = sup.readySlots();
    const slot = preferred !== undefined && ready.includes(preferred) ? preferred : ready[0];
    if (slot === undefined || !ipc.send(slot, { t: "ss:presence-notice", notices })) {
      log.warn({ notices: notices.length }, "no worker to emit presence notices; dropped");
    }
  };

  const leave = (room: string, userId: string) => {
    const users = rooms.get(room);
    const p = users?.get(userId);
    if (!users || !p || p.slots.size > 0) return;
    users.delete(userId);
    if (users.size === 0) rooms.delete(room);
    emit([["leave", room, userId]]);
  };

  /** `slot` lets go of the user; the last one to do so starts the delay. */
  const release = (room: string, userId: string, p: Present, slot: number) => {
    if (!p.slots.delete(slot) || p.slots.size > 0) return;
    p.leaving = setTimeout(() => leave(room, userId), deps.leaveDelayMs);
    p.leaving.unref();
  };

  ipc.on("ss:presence", (slot, { changes }) => {
    const joins: PresenceNotices = [];
    for (const [room, userId, present] of changes as PresenceChange[]) {
      let users = rooms.get(room);
      const p = users?.get(userId);
      if (!present) {
        if (p) release(room, userId, p, slot);
        continue;
      }
      if (p) {
        // Back within the delay (a reload): still present, no second join.
        clearTimeout(p.leaving);
        p.leaving = undefined;
        p.slots.add(slot);
        continue;
      }
      if (!users) {
        users = new Map();
        rooms.set(room, users);
      }
      users.set(userId, { slots: new Set([slot]) });
      joins.push(["join", room, userId]);
    }
    if (joins.length > 0) emit(joins, slot);
  });

  ipc.answer("ss:presence-list", (_slot, { room }) => ({
    users: [...(rooms.get(room)?.keys() ?? [])],
  }));

  // A worker that exits holds nobody any more: its users leave after the delay.
  sup.on("exit", (slot) => {
    for (const [room, users] of rooms) {
      for (const [userId, p] of users) release(room, userId, p, slot);
    }
  });

  return {
    counts(wanted) {
      const out: Record<string, number> = {};
      for (const room of wanted) out[room] = rooms.get(room)?.size ?? 0;
      return out;
    },
    close() {
      for (const users of rooms.values()) for (const p of users.values()) clearTimeout(p.leaving);
      rooms.clear();
    },
  };
}
