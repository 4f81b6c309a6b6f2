import type { Query } from "../shared/ipc.js";
import { userRoom } from "../shared/events.js";
import {
  disconnectWith,
  type GatewayServer,
  type GatewaySocket,
  roomsOf,
} from "./gateway/gateway.js";
import type { WorkerObservability } from "./worker-metrics.js";

/**
 * Answers a cluster query about this worker's own sockets. The primary sends
 * the same query to every worker and merges the answers.
 */

export interface UserAnswer {
  sockets: number;
  rooms: string[];
}
export interface RoomsAnswer {
  rooms: Record<string, { sockets: number; users: string[] }>;
}
export interface RoomAnswer {
  members: Record<string, number>;
  sockets: number;
}
export interface CountAnswer {
  sockets: number;
}

export type CustomQueryHandler = (args: unknown) => unknown | Promise<unknown>;

export function createLocalQueries(
  io: GatewayServer,
  extra: {
    status: () => unknown;
    custom?: Map<string, CustomQueryHandler>;
    onRevoke?: (q: Extract<Query, { kind: "revoke" }>) => number;
    observability?: WorkerObservability;
  },
) {
  const nsp = io.of("/");
  const socketsIn = (room: string): GatewaySocket[] => {
    const ids = nsp.adapter.rooms.get(room);
    if (!ids) return [];
    const out: GatewaySocket[] = [];
    for (const id of ids) {
      const s = nsp.sockets.get(id);
      if (s) out.push(s);
    }
    return out;
  };

  return async function answer(q: Query): Promise<unknown> {
    switch (q.kind) {
      case "user": {
        const sockets = socketsIn(userRoom(q.userId));
        const rooms = new Set<string>();
        for (const s of sockets) for (const r of roomsOf(s)) rooms.add(r);
        return { sockets: sockets.length, rooms: [...rooms] } satisfies UserAnswer;
      }
      case "rooms": {
        const rooms: RoomsAnswer["rooms"] = {};
        for (const [room, ids] of nsp.adapter.rooms) {
          if (nsp.adapter.sids.has(room)) continue; // a socket's own room
          if (q.prefix && !room.startsWith(q.prefix)) continue;
          const users = new Set<string>();
          for (const id of ids) {
            const u = nsp.sockets.get(id)?.data.userId;
            if (u) users.add(u);
          }
          rooms[room] = { sockets: ids.size, users: [...users] };
        }
        return { rooms } satisfies RoomsAnswer;
      }
      case "room": {
        const members: Record<string, number> = {};
        const sockets = socketsIn(q.room);
        for (const s of sockets) {
          const u = s.data.userId ?? `(unregistered:${s.id})`;
          members[u] = (members[u] ?? 0) + 1;
        }
        return { members, sockets: sockets.length } satisfies RoomAnswer;
      }
      case "join":
      case "leave": {
        const sockets = socketsIn(userRoom(q.userId));
        for (const s of sockets) {
          if (q.kind === "join") s.join(q.room);
          else s.leave(q.room);
        }
        return { sockets: sockets.length } satisfies CountAnswer;
      }
      case "disconnect-user": {
        const sockets = socketsIn(userRoom(q.userId));
        for (const s of sockets) disconnectWith(s, q.reason);
        return { sockets: sockets.length } satisfies CountAnswer;
      }
      case "status":
        return extra.status();
      case "revoke":
        return { sockets: extra.onRevoke?.(q) ?? 0 } satisfies CountAnswer;
      case "custom": {
        const h = extra.custom?.get(q.name);
        if (!h) throw new Error(`no custom query ${q.name}`);
        return h(q.args);
      }
      case "metrics":
      case "dashboard":
      case "dashboard-rooms": {
        if (!extra.observability) throw new Error(`no ${q.kind} answer in this worker`);
        const o = extra.observability;
        if (q.kind === "metrics") return o.metricsAnswer();
        if (q.kind === "dashboard") return o.dashboardAnswer(q);
        return o.roomsPage(q);
      }
    }
  };
}
