import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { Server, Socket } from "socket.io";
import type { Config } from "../../shared/config.js";
import { type AckError, ackError, connectMessage, type ErrorCode } from "../../shared/errors.js";
import {
  BUILT_IN_EVENTS,
  type ClientToServerEvents,
  DISCONNECT_REASONS,
  type DisconnectReason,
  type HistoryPosition,
  type InterServerEvents,
  personalRoomOwner,
  type RoomOk,
  SERVER_DISCONNECT_EVENT,
  type ServerToClientEvents,
  type SocketData,
  userRoom,
} from "../../shared/events.js";
import { isHistoryPosition } from "../../shared/history.js";
import { metrics } from "../../shared/metrics.js";
import { isValidEventName, isValidRoom, roomAllowed, USER_ID_PATTERN } from "../../shared/names.js";
import type { AuthService } from "../auth/auth-service.js";
import { createDeadlines } from "../deadlines.js";
import type { ForwardedEvent, Forwarder } from "../forward/backend-contract.js";

export type GatewayServer = Server<
  ClientToServerEvents,
  ServerToClientEvents,
  InterServerEvents,
  SocketData
>;
export type GatewaySocket = Socket<
  ClientToServerEvents,
  ServerToClientEvents,
  InterServerEvents,
  SocketData
>;

/** Points where later features hook into a socket's life. */
export interface GatewayHooks {
  /** Before the register ack; may return how many stored messages will follow. */
  beforeRegisterAck?: (
    socket: GatewaySocket,
    userId: string,
  ) => Promise<number | undefined> | number | undefined;
  afterRegister?: (socket: GatewaySocket, userId: string) => Promise<void> | void;
  /** Per forwarded event, with its arguments (ack excluded); an error rejects it (rate limits). */
  admitEvent?: (
    socket: GatewaySocket,
    event: string,
    payload: readonly unknown[],
  ) => AckError | undefined;
  onDisconnect?: (socket: GatewaySocket, reason: string) => void;
  /**
   * A permitted `room:join` of a room this hook owns (history rooms): it
   * joins the socket itself and resolves with the ack's extra fields;
   * undefined for the rooms it does not own.
   */
  joinRoom?: (
    socket: GatewaySocket,
    room: string,
    since: HistoryPosition | undefined,
  ) => Promise<Partial<RoomOk>> | undefined;
}

export interface GatewayDeps {
  io: GatewayServer;
  cfg: Config;
  log: Logger;
  auth: AuthService;
  forwarder: Forwarder;
  /** Called in order; each feature adds its own. */
  hooks?: GatewayHooks[];
  /**
   * The verdict given at the session's Engine.IO handshake (deny list,
   * shedding, per-address limits: protection/admission.ts) and the client
   * address it used; without it, the TCP peer and no refusal.
   */
  admission?: (socket: GatewaySocket) => { ip: string; refusal?: HandshakeRefusal | undefined };
  /** Starts the token's verification in this event-loop turn or a later one (protection/handshake-pacer.ts). */
  paceVerify?: (socket: GatewaySocket, start: () => void) => void;
}

/** Why a handshake is refused: `err.data` of the client's connect_error. */
export interface HandshakeRefusal {
  code: ErrorCode;
  /** Seconds (RATE_LIMITED, OVERLOADED, SHUTTING_DOWN). */
  retryAfter?: number;
}

type AckFn = (res: unknown) => void;

const builtIn = new Set<string>(BUILT_IN_EVENTS);

function connectError(refusal: ErrorCode | HandshakeRefusal): Error {
  const data = typeof refusal === "string" ? { code: refusal } : refusal;
  if (data.code.startsWith("AUTH_")) metrics.authFailures.inc({ code: data.code });
  const err = new Error(connectMessage(data.code)) as Error & {
    data: HandshakeRefusal;
  };
  err.data = data;
  return err;
}

/** How late a register timeout may fire (one timer for all sockets: deadlines.ts). */
const REGISTER_TIMEOUT_RESOLUTION_MS = 100;

/** Longest a join's ack waits for the room's subscription on Redis. */
const ROOM_SUBSCRIBE_WAIT_MS = 2_000;

/**
 * Settles once pushes from other hosts to `room` reach this socket: with
 * Redis in sharded mode, once the room channel's SSUBSCRIBE is confirmed
 * (`roomSubscribed` in redis/hosts-adapter.ts), at most
 * ROOM_SUBSCRIBE_WAIT_MS; undefined when there is nothing to wait for (any
 * other adapter, where a join takes effect at once, or a room already
 * subscribed). So an ack of `register` or `room:join` means a push
 * sent after it, from any host, arrives.
 */
function roomReachable(socket: GatewaySocket, room: string): Promise<void> | undefined {
  const adapter = socket.nsp.adapter as {
    roomSubscribed?: (room: string) => Promise<void> | undefined;
  };
  const subscribed = adapter.roomSubscribed?.(room);
  if (!subscribed) return undefined;
  let timer: NodeJS.Timeout | undefined;
  const cap = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ROOM_SUBSCRIBE_WAIT_MS);
  });
  return Promise.race([subscribed, cap]).finally(() => clearTimeout(timer));
}

/** Sends the reason, then disconnects (the client sees `server:disconnect` first). */
export function disconnectWith(socket: GatewaySocket, code: DisconnectReason): void {
  metrics.serverDisconnects.inc({ code });
  socket.emit(SERVER_DISCONNECT_EVENT, { code, message: DISCONNECT_REASONS[code] });
  socket.disconnect(true);
}

export function attachGateway(deps: GatewayDeps): void {
  const { io, cfg, log: baseLog, auth, forwarder } = deps;
  const log = baseLog.child({ module: "gateway" });
  const hooks = combineHooks(deps.hooks ?? []);

  io.use((socket, next) => {
    const { ip, refusal } = deps.admission?.(socket) ?? { ip: socket.handshake.address };
    if (refusal) return next(connectError(refusal));
    if (!deps.paceVerify) return authenticate(socket, ip, next);
    deps.paceVerify(socket, () => authenticate(socket, ip, next));
  });

  function authenticate(socket: GatewaySocket, ip: string, next: (err?: Error) => void): void {
    const token = (socket.handshake.auth as { token?: unknown } | undefined)?.token;
    if (typeof token !== "string" || token.length === 0) {
      next(connectError("AUTH_MISSING"));
      return;
    }
    auth.verify(token).then(
      (r) => {
        if (!r.ok) {
          log.debug({ code: r.code, reason: r.reason, ip }, "handshake refused");
          return next(connectError(r.code));
        }
        socket.data = {
          sub: r.claims.sub,
          roomClaims: r.claims.rooms,
          exp: r.claims.exp,
          iat: r.claims.iat,
          ...(r.claims.jti ? { jti: r.claims.jti } : {}),
          ip,
          connectedAt: Date.now(),
        };
        next();
      },
      (err: unknown) => {
        log.error({ err }, "token verification failed unexpectedly");
        next(connectError("OVERLOADED"));
      },
    );
  }

  // The register timeout of every new socket on one timer (deadlines.ts).
  const registerDue = (socket: GatewaySocket) => socket.data.connectedAt + cfg.REGISTER_TIMEOUT_MS;
  const unregistered = createDeadlines<GatewaySocket>({
    resolutionMs: REGISTER_TIMEOUT_RESOLUTION_MS,
    onDue: (socket) => {
      if (socket.connected && !socket.data.userId) disconnectWith(socket, "REGISTER_TIMEOUT");
    },
    onError: (err) => log.error({ err }, "register timeout failed"),
  });

  // The handlers are shared by every socket: Socket.IO calls them with the
  // socket as `this`, so a socket holds no closure of its own.
  function onDisconnect(this: GatewaySocket, reason: string) {
    if (!this.data.userId) unregistered.delete(this, registerDue(this));
    hooks.onDisconnect?.(this, reason);
  }

  function onRegister(this: GatewaySocket, req: unknown, ack?: unknown) {
    register(this, req, ack);
  }

  function register(socket: GatewaySocket, req: unknown, ack?: unknown) {
    const reply = typeof ack === "function" ? (ack as AckFn) : () => {};
    const userId = (req as { userId?: unknown } | null)?.userId;
    if (typeof userId !== "string" || !USER_ID_PATTERN.test(userId)) {
      return reply(ackError("INVALID_PAYLOAD", "register needs { userId: string }"));
    }
    if (userId !== socket.data.sub) {
      return reply(ackError("FORBIDDEN", "userId must equal the token's sub"));
    }
    if (socket.data.userId) {
      return reply({ ok: true, userId, rooms: roomsOf(socket) });
    }
    unregistered.delete(socket, registerDue(socket));
    socket.data.userId = userId;
    socket.join(userRoom(userId));
    Promise.all([
      hooks.beforeRegisterAck?.(socket, userId),
      roomReachable(socket, userRoom(userId)),
    ])
      .then(([replayed]) => {
        reply({
          ok: true,
          userId,
          rooms: roomsOf(socket),
          // Only when stored messages follow: an ack without it means none.
          ...(replayed ? { replayed } : {}),
        });
        return hooks.afterRegister?.(socket, userId);
      })
      .catch((err: unknown) => log.error({ err, socketId: socket.id }, "register hook failed"));
  }

  function roomOp(socket: GatewaySocket, op: "join" | "leave", req: unknown, ack?: unknown) {
    const reply = typeof ack === "function" ? (ack as AckFn) : () => {};
    if (!socket.data.userId) return reply(ackError("NOT_REGISTERED"));
    const room = (req as { room?: unknown } | null)?.room;
    if (!isValidRoom(room, cfg.MAX_ROOM_NAME_LENGTH)) {
      return reply(ackError("INVALID_PAYLOAD", "needs { room: string } with a valid room name"));
    }
    // Personal rooms carry a user's pushes: only that user's own sockets,
    // whatever the claim says (`*`, `user:*`); the backend's API can place anyone.
    const owner = personalRoomOwner(room);
    if (owner !== undefined && owner !== socket.data.userId) {
      return reply(ackError("FORBIDDEN", "a personal room belongs to its user"));
    }
    if (!roomAllowed(room, socket.data.roomClaims)) {
      return reply(ackError("FORBIDDEN", "the token's rooms claim does not allow this room"));
    }
    if (op === "leave") {
      socket.leave(room);
      return reply({ ok: true, room, rooms: roomsOf(socket) });
    }
    if (!socket.rooms.has(room) && socket.rooms.size - 1 >= cfg.MAX_ROOMS_PER_SOCKET) {
      return reply(ackError("FORBIDDEN", "too many rooms for one socket"));
    }
    const since = (req as { since?: unknown }).since;
    if (since !== undefined && !isHistoryPosition(since)) {
      return reply(
        ackError("INVALID_PAYLOAD", "since must be { epoch: string, offset: integer >= 0 }"),
      );
    }
    // Joined (by a hook or here): the ack once pushes from any host reach it.
    const joined = (extra?: object) => {
      const answer = () => reply({ ok: true, room, rooms: roomsOf(socket), ...extra });
      const reachable = roomReachable(socket, room);
      if (reachable) void reachable.then(answer);
      else answer();
    };
    const owned = hooks.joinRoom?.(socket, room, since);
    if (owned) {
      owned.then(joined, (err: unknown) => {
        log.error({ err, socketId: socket.id }, "room join hook failed");
        reply(ackError("INTERNAL"));
      });
    } else {
      socket.join(room);
      joined();
    }
  }
  function onJoin(this: GatewaySocket, req: unknown, ack?: unknown) {
    roomOp(this, "join", req, ack);
  }
  function onLeave(this: GatewaySocket, req: unknown, ack?: unknown) {
    roomOp(this, "leave", req, ack);
  }

  function onAnyEvent(this: GatewaySocket, event: unknown, ...args: unknown[]) {
    forwardEvent(this, event, args);
  }

  function forwardEvent(socket: GatewaySocket, event: unknown, args: unknown[]) {
    if (typeof event === "string" && builtIn.has(event)) return;
    const last = args[args.length - 1];
    const ack = typeof last === "function" ? (last as AckFn) : undefined;
    const reply = ack ?? (() => {});
    if (!socket.data.userId) return reply(ackError("NOT_REGISTERED"));
    if (!isValidEventName(event, cfg.MAX_EVENT_NAME_LENGTH)) {
      return reply(ackError("INVALID_PAYLOAD", "the event name is not valid or is reserved"));
    }
    const payload = ack ? args.slice(0, -1) : args;
    const rejected = hooks.admitEvent?.(socket, event, payload);
    if (rejected) return reply(rejected);
    const forwarded: ForwardedEvent = {
      id: randomUUID(),
      event,
      payload: payload.length <= 1 ? payload[0] : payload,
      userId: socket.data.userId,
      socketId: socket.id,
      rooms: roomsOf(socket),
      receivedAt: new Date().toISOString(),
    };
    forwarder.forward(forwarded).then(reply, (err: unknown) => {
      log.error({ err, event }, "forwarding failed unexpectedly");
      reply(ackError("BACKEND_UNAVAILABLE"));
    });
  }

  io.on("connection", (socket) => {
    unregistered.add(socket, registerDue(socket));
    socket.on("disconnect", onDisconnect);
    socket.on("register", onRegister);
    socket.on("room:join", onJoin);
    socket.on("room:leave", onLeave);
    socket.onAny(onAnyEvent);
  });
}

function combineHooks(list: GatewayHooks[]): GatewayHooks {
  return {
    beforeRegisterAck: async (socket, userId) => {
      // Hooks that count stored messages (delivery) add up; undefined when none counts.
      let replayed: number | undefined;
      for (const h of list) {
        const n = await h.beforeRegisterAck?.(socket, userId);
        if (typeof n === "number") replayed = (replayed ?? 0) + n;
      }
      return replayed;
    },
    afterRegister: async (socket, userId) => {
      for (const h of list) await h.afterRegister?.(socket, userId);
    },
    admitEvent: (socket, event, payload) => {
      for (const h of list) {
        const rejected = h.admitEvent?.(socket, event, payload);
        if (rejected) return rejected;
      }
      return undefined;
    },
    onDisconnect: (socket, reason) => {
      for (const h of list) h.onDisconnect?.(socket, reason);
    },
    joinRoom: (socket, room, since) => {
      for (const h of list) {
        const joined = h.joinRoom?.(socket, room, since);
        if (joined) return joined;
      }
      return undefined;
    },
  };
}

/** The rooms a socket is in, without its own private room. */
export function roomsOf(socket: GatewaySocket): string[] {
  const out: string[] = [];
  for (const r of socket.rooms) if (r !== socket.id) out.push(r);
  return out;
}
