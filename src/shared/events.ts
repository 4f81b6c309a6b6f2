/**
 * The Socket.IO wire contract, typed once and imported by the server, the
 * tests, the browser client and the bench clients.
 */
import type { AckError } from "./errors.js";

export type Ack<T> = ({ ok: true } & T) | AckError;

export interface RegisterRequest {
  userId: string;
}
export interface RegisterOk {
  userId: string;
  rooms: string[];
  /** Offline messages delivered right after this ack (delivery issue). */
  replayed?: number;
}
export interface RoomRequest {
  room: string;
}
/**
 * Where a push sits in a history room's sequence (HISTORY_ROOMS): `offset`
 * counts the room's pushes, system-wide; a new `epoch` means the history
 * before it is gone.
 */
export interface HistoryPosition {
  epoch: string;
  offset: number;
}
/** The second argument of a push to a history room: its room and position there. */
export interface RoomPosition extends HistoryPosition {
  room: string;
}
export interface RoomJoinRequest extends RoomRequest {
  /** A history room: deliver every push after this position first (recovery). */
  since?: HistoryPosition;
}
export interface RoomOk {
  room: string;
  rooms: string[];
  /** A join with `since`: whether every push after it was delivered (false: refetch). */
  recovered?: boolean;
  /** A join to a history room: the room's position now (the last push delivered, with `since`). */
  position?: HistoryPosition;
}
export interface RefreshRequest {
  token: string;
}
export interface RefreshOk {
  /** Unix seconds: the new token's `exp` (every accepted token has one). */
  expiresAt: number;
}

/** `presence:list` (PRESENCE_ROOMS): the users present in a room the socket is in. */
export interface PresenceListOk {
  room: string;
  users: string[];
}
/** `presence:join` / `presence:leave`, to every member of a presence room. */
export interface PresenceNotice {
  room: string;
  userId: string;
}
/** `room:signal` (SIGNAL_ROOMS): relayed to the room's other sockets, never to the backend. */
export interface SignalRequest {
  room: string;
  /** Follows the event-name rules (names.ts). */
  name: string;
  /** Any JSON of at most SIGNAL_MAX_BYTES. */
  data?: unknown;
}
export interface RoomSignal extends SignalRequest {
  /** The sender's userId. */
  from: string;
}

/** Events the server handles itself; every other client event is forwarded. */
export const BUILT_IN_EVENTS = [
  "register",
  "auth:refresh",
  "room:join",
  "room:leave",
  "presence:list",
  "room:signal",
] as const;
export type BuiltInEvent = (typeof BUILT_IN_EVENTS)[number];

export interface ClientToServerEvents {
  register: (req: RegisterRequest, ack?: (res: Ack<RegisterOk>) => void) => void;
  "auth:refresh": (req: RefreshRequest, ack?: (res: Ack<RefreshOk>) => void) => void;
  "room:join": (req: RoomJoinRequest, ack?: (res: Ack<RoomOk>) => void) => void;
  "room:leave": (req: RoomRequest, ack?: (res: Ack<RoomOk>) => void) => void;
  "presence:list": (req: RoomRequest, ack?: (res: Ack<PresenceListOk>) => void) => void;
  "room:signal": (req: SignalRequest, ack?: (res: Ack<Record<never, never>>) => void) => void;
}

/** Pushes arrive under the name the backend chose, with its payload unchanged. */
export interface ServerToClientEvents {
  [event: string]: (...args: unknown[]) => void;
}

/** A push to a history room on its way to every worker (src/worker/history/history-rooms.ts). */
export interface HistoryFrame extends RoomPosition {
  event: string;
  payload: unknown;
  /** userIds whose sockets must not receive it. */
  except?: string[];
  volatile?: boolean;
}

export interface InterServerEvents {
  "ss:history": (frame: HistoryFrame) => void;
}

/** Per-socket state kept after the handshake (socket.request is dropped). */
export interface SocketData {
  sub: string;
  userId?: string;
  /** The token's `rooms` claim: exact names or `prefix:*` patterns. */
  roomClaims: string[];
  /** Unix seconds (`exp` is required). */
  exp: number;
  iat: number | null;
  jti?: string;
  ip: string;
  connectedAt: number;
}

/** Reasons the server gives when it disconnects a socket (sent as `error` before). */
export const DISCONNECT_REASONS = {
  REGISTER_TIMEOUT: "the socket did not register in time",
  AUTH_EXPIRED: "the token expired",
  AUTH_REVOKED: "the token was revoked",
  KICKED: "disconnected by the backend",
  SHUTTING_DOWN: "the server is shutting down; reconnect",
  SLOW_CONSUMER: "the client did not read its socket",
} as const;
export type DisconnectReason = keyof typeof DISCONNECT_REASONS;

/**
 * Before the server disconnects a socket it emits this event, so the client
 * knows why (`socket.io` itself only reports "io server disconnect").
 */
export const SERVER_DISCONNECT_EVENT = "server:disconnect";
export const PRESENCE_JOIN_EVENT = "presence:join";
export const PRESENCE_LEAVE_EVENT = "presence:leave";
export const ROOM_SIGNAL_EVENT = "room:signal";
/** Events the server emits on its own; every other server → client event is a push. */
export const SERVER_EVENTS = [
  SERVER_DISCONNECT_EVENT,
  PRESENCE_JOIN_EVENT,
  PRESENCE_LEAVE_EVENT,
  ROOM_SIGNAL_EVENT,
] as const;
export interface ServerDisconnectNotice {
  code: DisconnectReason;
  message: string;
}

export const userRoom = (userId: string): string => `user:${userId}`;
const USER_ROOM_PREFIX = userRoom("");
/** The user a personal room `user:<id>` belongs to; undefined for any other room. */
export const personalRoomOwner = (room: string): string | undefined =>
  room.startsWith(USER_ROOM_PREFIX) ? room.slice(USER_ROOM_PREFIX.length) : undefined;
