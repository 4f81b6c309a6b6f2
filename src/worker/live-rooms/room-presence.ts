import type { Logger } from "pino";
import type { Config } from "../../shared/config.js";
import { ackError } from "../../shared/errors.js";
import { PRESENCE_JOIN_EVENT, PRESENCE_LEAVE_EVENT } from "../../shared/events.js";
import { PRESENCE_COUNTS_QUERY, type PresenceChange } from "../../shared/ipc.js";
import { metrics } from "../../shared/metrics.js";
import { inRoomList, isValidRoom } from "../../shared/names.js";
import type { GatewayServer, GatewaySocket } from "../gateway/gateway.js";
import type { WorkerChannel } from "../ipc-channel.js";
import type { CustomQueryHandler } from "../local-queries.js";
import type { RedisLink } from "../redis/redis-link.js";
import { createRedisPresence } from "./redis-presence.js";

/**
 * Presence in PRESENCE_ROOMS, the worker's half: it counts, per room and
 * user, this worker's sockets in the room, from the adapter's own
 * `join-room` / `leave-room` events, so every way in and out counts the
 * same (`room:join`, the backend's `PUT`/`DELETE …/members/…`,
 * `room:leave`, a disconnect). Only a user's first socket in (and last one
 * out) on this worker is news, sent once per loop turn to whoever keeps
 * the host's or the system's view:
 * - without Redis, the primary (`ss:presence`, src/primary/room-presence.ts),
 *   which sends back the notices for this worker to emit;
 * - with Redis, Redis itself (redis-presence.ts), where every host sees it.
 * Either decides the joins and the delayed leaves; the notices go out as a
 * room emit, which the cluster adapter (and between hosts, the hosts
 * adapter) carries to every member.
 *
 * `presence:list` answers a member of the room with who is present there.
 * Without PRESENCE_ROOMS nothing is counted: plain rooms cost nothing.
 */

export interface PresenceBackend {
  /** This worker's changes, in order. */
  apply(changes: PresenceChange[]): void;
  list(room: string): Promise<string[]>;
  counts?(rooms: string[]): Promise<Record<string, number>>;
  start?(): Promise<void>;
  close(): Promise<void>;
}

export interface RoomPresence {
  /** Custom cluster queries (the dashboard's counts, with Redis). */
  queries: Map<string, CustomQueryHandler>;
  start(): Promise<void>;
  /** Sends what is pending (the sockets just closed) and stops. */
  close(): Promise<void>;
}

const key = (room: string, userId: string) => `${room}\n${userId}`;

export function createRoomPresence(deps: {
  io: GatewayServer;
  cfg: Config;
  log: Logger;
  primary: Pick<WorkerChannel, "send" | "call" | "on">;
  /** With Redis: the link, and who holds this worker's entries there. */
  redis?: { link: RedisLink; holder: string; cluster: boolean };
}): RoomPresence {
  const { io, cfg } = deps;
  const log = deps.log.child({ module: "room-presence" });
  const nsp = io.of("/");
  const enabled = cfg.PRESENCE_ROOMS.length > 0;
  const isPresenceRoom = (room: string) => inRoomList(room, cfg.PRESENCE_ROOMS);

  const emitNotice = (kind: "join" | "leave", room: string, userId: string) => {
    metrics.presenceNotices.inc({ kind });
    io.to(room).emit(kind === "join" ? PRESENCE_JOIN_EVENT : PRESENCE_LEAVE_EVENT, {
      room,
      userId,
    });
  };

  // This worker's sockets per (room, user), for presence rooms only.
  const held = new Map<string, { room: string; userId: string; sockets: number }>();

  let backend: PresenceBackend | undefined;
  if (enabled) {
    backend = deps.redis
      ? createRedisPresence({
          ...deps.redis,
          prefix: cfg.REDIS_KEY_PREFIX,
          leaseMs: cfg.PRESENCE_LEASE_MS,
          leaveDelayMs: cfg.PRESENCE_LEAVE_DELAY_MS,
          commandTimeoutMs: Math.max(cfg.QUERY_TIMEOUT_MS, 500),
          log,
          held: () => held.values(),
          onNotice: emitNotice,
        })
      : {
          apply: (changes) => void deps.primary.send({ t: "ss:presence", changes }),
          list: async (room) =>
            (await deps.primary.call("ss:presence-list", { room }, cfg.QUERY_TIMEOUT_MS)).users,
          close: async () => {},
        };
    if (!deps.redis) {
      deps.primary.on("ss:presence-notice", ({ notices }) => {
        for (const [kind, room, userId] of notices) emitNotice(kind, room, userId);
      });
    }
  }

  let pending: PresenceChange[] = [];
  const flush = () => {
    if (pending.length === 0) return;
    const changes = pending;
    pending = [];
    backend?.apply(changes);
  };
  const change = (room: string, userId: string, present: boolean) => {
    if (pending.length === 0) setImmediate(flush);
    pending.push([room, userId, present]);
  };

  if (enabled) {
    const adapter = nsp.adapter;
    /** One socket of a registered user into (+1) or out of (-1) a presence room. */
    const count = (room: string, id: string, by: 1 | -1) => {
      if (!isPresenceRoom(room)) return;
      // A disconnect leaves every room before the socket leaves the namespace: its data is still there.
      const userId = nsp.sockets.get(id)?.data.userId;
      if (!userId) return;
      const k = key(room, userId);
      const sockets = (held.get(k)?.sockets ?? 0) + by;
      if (sockets > 0) {
        held.set(k, { room, userId, sockets });
        if (by === 1 && sockets === 1) change(room, userId, true);
      } else if (held.delete(k)) {
        change(room, userId, false);
      }
    };
    adapter.on("join-room", (room: string, id: string) => count(room, id, 1));
    adapter.on("leave-room", (room: string, id: string) => count(room, id, -1));
  }

  // Shared by every socket: Socket.IO calls it with the socket as `this`.
  function onList(this: GatewaySocket, req: unknown, ack?: unknown) {
    list(this, req, ack);
  }

  function list(socket: GatewaySocket, req: unknown, ack?: unknown) {
    const reply = typeof ack === "function" ? (ack as (res: unknown) => void) : () => {};
    if (!socket.data.userId) return reply(ackError("NOT_REGISTERED"));
    const room = (req as { room?: unknown } | null)?.room;
    if (!isValidRoom(room, cfg.MAX_ROOM_NAME_LENGTH)) {
      return reply(ackError("INVALID_PAYLOAD", "needs { room: string } with a valid room name"));
    }
    if (!backend || !isPresenceRoom(room)) {
      return reply(ackError("FORBIDDEN", "presence is not kept for this room (PRESENCE_ROOMS)"));
    }
    if (!socket.rooms.has(room)) {
      return reply(ackError("FORBIDDEN", "only a member of the room may list who is present"));
    }
    backend.list(room).then(
      (users) => reply({ ok: true, room, users: users.sort() }),
      (err: unknown) => {
        log.warn({ err }, "presence:list failed");
        reply(ackError("OVERLOADED", "presence is unavailable right now", { retryAfter: 1 }));
      },
    );
  }
  io.on("connection", (socket) => {
    socket.on("presence:list", onList);
  });

  const queries = new Map<string, CustomQueryHandler>();
  const counts = backend?.counts?.bind(backend);
  if (counts) {
    queries.set(PRESENCE_COUNTS_QUERY, (args) => {
      const rooms = (args as { rooms?: unknown } | null)?.rooms;
      if (!Array.isArray(rooms) || rooms.length > 1_000)
        throw new Error("needs { rooms: string[] }");
      return counts(rooms.filter((r): r is string => typeof r === "string" && isPresenceRoom(r)));
    });
  }

  return {
    queries,
    start: async () => backend?.start?.(),
    async close() {
      flush();
      await backend?.close();
    },
  };
}
