import type { Logger } from "pino";
import type { Config } from "../../shared/config.js";
import {
  type HistoryFrame,
  type HistoryPosition,
  type RoomOk,
  type RoomPosition,
  userRoom,
} from "../../shared/events.js";
import { counterKeepMs, type HistoryRead } from "../../shared/history.js";
import { metrics } from "../../shared/metrics.js";
import { roomAllowed } from "../../shared/names.js";
import type { GatewayHooks, GatewayServer, GatewaySocket } from "../gateway/gateway.js";
import type { WorkerChannel } from "../ipc-channel.js";
import { bufferedBytes, connectionOf, transportDrained } from "../sio-internals.js";
import { createPrimaryHistory, type HistoryStore, withHistoryFallback } from "./history-store.js";
import { createRedisHistory } from "./redis-history.js";
import { createRoomOrder } from "./room-order.js";

/**
 * History rooms (HISTORY_ROOMS): every push to one gets a position from the
 * sequencer (history-store.ts) and goes to every worker as a frame
 * (`ss:history`, server-side emit: the cluster adapter in the host, Redis
 * between hosts); each worker puts the frames of a room back in offset
 * order (room-order.ts) and emits them to its sockets with the position as
 * the second argument.
 *
 * `room:join` with `since` joins at once, but the socket's live frames of
 * that room wait in a buffer while the history after `since` is read and
 * written to it; then the buffer follows, without the frames the history
 * already covered. Frames the history covered can also arrive after that
 * (the read answered before their frames crossed from the worker that took
 * them): the socket keeps a floor, the position it read, and the frames at
 * or below it skip it until the room's frames pass it. So the socket gets
 * every push after `since` once, in order, and nothing newer before them.
 */

/** Longest a recovering socket may take to accept its history (then: recovered: false). */
const REPLAY_MAX_MS = 30_000;

export interface HistoryRooms {
  covers(room: string): boolean;
  /** Appends a push to these history rooms and sends it; one position per room. */
  push(p: {
    rooms: string[];
    event: string;
    payload: unknown;
    except?: string[] | undefined;
    volatile?: boolean | undefined;
  }): Promise<HistoryPosition[]>;
  hooks: GatewayHooks;
  start(ms: number): Promise<void>;
  close(): Promise<void>;
}

interface Recovering {
  socket: GatewaySocket;
  buffer: HistoryFrame[];
}

export function createHistoryRooms(deps: {
  io: GatewayServer;
  cfg: Config;
  log: Logger;
  primary: Pick<WorkerChannel, "call">;
  /** Other workers (and hosts) exist: send frames to them too (not with an in-memory adapter). */
  peers: boolean;
}): HistoryRooms {
  const { io, cfg } = deps;
  const log = deps.log.child({ module: "history" });
  const patterns = cfg.HISTORY_ROOMS;
  const covers = (room: string) => patterns.length > 0 && roomAllowed(room, patterns);
  const ttlMs = cfg.HISTORY_TTL_S * 1_000;
  const highWaterBytes = Math.floor(cfg.MAX_BUFFERED_BYTES_PER_SOCKET / 2);
  const host = createPrimaryHistory(deps.primary, cfg.QUERY_TIMEOUT_MS + 1_000);
  const redis =
    cfg.redis && patterns.length > 0
      ? createRedisHistory({
          target: cfg.redis,
          prefix: cfg.REDIS_KEY_PREFIX,
          size: cfg.HISTORY_SIZE,
          ttlMs,
          keepMs: counterKeepMs(ttlMs),
          commandTimeoutMs: Math.max(cfg.QUERY_TIMEOUT_MS, 500),
        })
      : undefined;
  const store: HistoryStore = redis ? withHistoryFallback(redis, host, log) : host;

  /** Sockets of this worker recovering in a room: its live frames wait for them. */
  const recovering = new Map<string, Map<string, Recovering>>();
  /** Per room, sockets that recovered up to a position: frames up to it are not theirs. */
  const floors = new Map<string, Map<string, HistoryPosition>>();

  const positionOf = (f: HistoryFrame): RoomPosition => ({
    room: f.room,
    epoch: f.epoch,
    offset: f.offset,
  });
  const excluded = (socket: GatewaySocket, f: HistoryFrame) =>
    f.except !== undefined &&
    socket.data.userId !== undefined &&
    f.except.includes(socket.data.userId);

  const deliver = (f: HistoryFrame) => {
    const waiting = recovering.get(f.room);
    const except = f.except?.map(userRoom) ?? [];
    if (waiting) except.push(...waiting.keys());
    const floor = floors.get(f.room);
    if (floor) {
      for (const [id, p] of floor) {
        if (p.epoch === f.epoch && f.offset <= p.offset) except.push(id);
        // Frames go out in offset order: nothing at or below the floor is to come.
        else floor.delete(id);
      }
      if (floor.size === 0) floors.delete(f.room);
    }
    let op = io.local.to(f.room);
    if (except.length > 0) op = op.except(except);
    if (f.volatile) op = op.volatile;
    op.emit(f.event, f.payload, positionOf(f));
    if (waiting) for (const r of waiting.values()) if (!excluded(r.socket, f)) r.buffer.push(f);
  };
  // A frame past a gap waits this long for the frames before it (room-order.ts).
  const order = createRoomOrder(deliver, cfg.HISTORY_REORDER_WAIT_MS);
  const adapter = io.of("/").adapter;
  const onRoomDeleted = (room: string) => {
    if (covers(room) && !recovering.has(room)) order.forget(room);
    floors.delete(room);
  };
  const onLeft = (room: string, id: string) => {
    const floor = floors.get(room);
    if (!floor) return;
    floor.delete(id);
    if (floor.size === 0) floors.delete(room);
  };
  adapter.on("delete-room", onRoomDeleted);
  adapter.on("leave-room", onLeft);

  const receive = (f: HistoryFrame) => {
    // No socket here in that room: nothing to order or deliver.
    if (!adapter.rooms.has(f.room) && !recovering.has(f.room)) return;
    order.receive(f);
  };
  io.on("ss:history", receive);

  async function push(p: Parameters<HistoryRooms["push"]>[0]): Promise<HistoryPosition[]> {
    const { positions, store: kind } = await store.append({
      rooms: p.rooms,
      event: p.event,
      payloadJson: JSON.stringify(p.payload ?? null),
    });
    metrics.historyPushes.inc({ store: kind }, p.rooms.length);
    p.rooms.forEach((room, i) => {
      const frame: HistoryFrame = {
        room,
        ...positions[i]!,
        event: p.event,
        payload: p.payload,
        ...(p.except?.length ? { except: p.except } : {}),
        ...(p.volatile ? { volatile: true } : {}),
      };
      if (deps.peers) io.serverSideEmit("ss:history", frame);
      receive(frame);
    });
    return positions;
  }

  /**
   * Writes the history's entries in order, paced by the socket's output
   * (engine.io's queue plus ws' send buffer) like the offline store's
   * replay, so a long history does not trip the slow-consumer limit.
   * Returns how many were written: fewer if the socket went away or did not
   * take them within REPLAY_MAX_MS.
   */
  async function replay(
    socket: GatewaySocket,
    room: string,
    read: Extract<HistoryRead, { recovered: true }>,
  ): Promise<number> {
    const conn = connectionOf(socket);
    const deadline = Date.now() + REPLAY_MAX_MS;
    let written = 0;
    for (const e of read.entries) {
      while (socket.connected && bufferedBytes(conn) > highWaterBytes && Date.now() < deadline) {
        await transportDrained(conn, 50);
      }
      if (!socket.connected || Date.now() >= deadline) break;
      socket.emit(e.event, JSON.parse(e.payloadJson), {
        room,
        epoch: read.position.epoch,
        offset: e.offset,
      });
      written += 1;
    }
    return written;
  }

  async function recover(
    socket: GatewaySocket,
    room: string,
    since: HistoryPosition,
  ): Promise<Partial<RoomOk>> {
    const waiting = recovering.get(room) ?? new Map<string, Recovering>();
    recovering.set(room, waiting);
    const me: Recovering = { socket, buffer: [] };
    waiting.set(socket.id, me);
    order.expect(room);
    socket.join(room);
    let read: HistoryRead | undefined;
    try {
      read = await store.read(room, since);
    } catch (err) {
      log.warn({ err }, "history unreachable; joined without recovery");
    }
    try {
      if (read) order.startAt(room, read.position.epoch, read.position.offset);
      if (read?.recovered) {
        const written = await replay(socket, room, read);
        metrics.historyReplayed.inc(written);
        // Cut short (the socket cannot take it in time): the client refetches.
        if (written < read.entries.length) read = { recovered: false, position: read.position };
      }
      // Live frames the history already covered are not sent twice.
      const covered = read?.position;
      for (const f of me.buffer) {
        if (covered && f.epoch === covered.epoch && f.offset <= covered.offset) continue;
        let op = socket;
        if (f.volatile) op = op.volatile;
        op.emit(f.event, f.payload, positionOf(f));
      }
      if (covered && socket.connected && socket.rooms.has(room)) {
        const floor = floors.get(room) ?? new Map<string, HistoryPosition>();
        floors.set(room, floor);
        floor.set(socket.id, covered);
      }
    } finally {
      waiting.delete(socket.id);
      if (waiting.size === 0) recovering.delete(room);
    }
    const recovered = read?.recovered === true;
    metrics.historyRecoveries.inc({ outcome: recovered ? "recovered" : "reset" });
    return { recovered, ...(read ? { position: read.position } : {}) };
  }

  const hooks: GatewayHooks = {
    joinRoom(socket, room, since) {
      if (!covers(room)) return undefined;
      if (since) return recover(socket, room, since);
      order.expect(room);
      socket.join(room);
      // Where the client starts: a reconnect recovers from here even if no push came before it.
      return store.read(room).then(
        (r) => {
          order.startAt(room, r.position.epoch, r.position.offset);
          return { position: r.position };
        },
        (err: unknown) => {
          log.warn({ err }, "history unreachable; joined without a position");
          return {};
        },
      );
    },
  };

  return {
    covers,
    push,
    hooks,
    async start(ms) {
      if (redis && !(await redis.ready(ms))) {
        log.warn("redis unreachable at start; history rooms use this host's sequencer for now");
      }
    },
    async close() {
      adapter.off("delete-room", onRoomDeleted);
      adapter.off("leave-room", onLeft);
      io.off("ss:history", receive);
      order.close();
      await store.close();
    },
  };
}
