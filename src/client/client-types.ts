import type { Socket } from "socket.io-client";
import type { DisconnectReason, HistoryPosition } from "../shared/events.js";
import type { OverflowPolicy } from "./bounded-queue.js";
import type { ClientErrorCode } from "./client-error.js";
import type { RoomReset } from "./room-positions.js";

// The client's public types: its options, states and the object createClient returns.

/**
 * - `connecting`: opening the first connection (or after `connect()`) and registering;
 * - `registered`: connected and registered; requests go out at once;
 * - `reconnecting`: the connection was lost; retrying with backoff, requests queue;
 * - `offline`: not connected and not trying (before `connect()`, after `close()`,
 *   after the backend disconnected this user with KICKED);
 * - `failed`: gave up (token refused twice, userId refused, attempts exhausted).
 */
export type ClientState = "offline" | "connecting" | "registered" | "reconnecting" | "failed";

export interface StateChange {
  state: ClientState;
  previous: ClientState;
  /** Human-readable, e.g. "transport close" or "token refused (AUTH_REVOKED)". */
  reason: string;
  /** The contract code behind the change, when there is one. */
  code?: ClientErrorCode | DisconnectReason;
}

export interface TokenRequest {
  /** Why a token is needed: the provider may cache for `connect`/`reconnect`, must not for `auth-retry`. */
  reason: "connect" | "reconnect" | "refresh" | "auth-retry";
}

export interface ClientOptions {
  /** The public port's URL; defaults to the page's origin. */
  url?: string;
  userId: string;
  /** Called at connect, on every reconnect, and shortly before the token expires. */
  getToken: (req: TokenRequest) => string | Promise<string>;
  /** Socket.IO path (default "/socket.io/"). */
  path?: string;
  transports?: ("polling" | "websocket" | "webtransport")[];
  /** Connect at once (default true); otherwise call `connect()`. */
  autoConnect?: boolean;
  reconnection?: {
    /** First delay, doubled per attempt (default 1000). */
    delayMs?: number;
    /** Cap (default 10000). */
    maxDelayMs?: number;
    /** 0..1 randomization of each delay (default 0.5). */
    jitter?: number;
    /** Give up (state `failed`) after this many attempts (default Infinity). */
    attempts?: number;
  };
  /** Default `timeoutMs` of `request()` (default 10000). */
  requestTimeoutMs?: number;
  /** How long to wait for the register ack before reconnecting (default 10000). */
  registerTimeoutMs?: number;
  /** Retries of BACKEND_UNAVAILABLE, OVERLOADED and RATE_LIMITED. */
  retry?: {
    /** Sends in all, first included (default 5). */
    attempts?: number;
    baseDelayMs?: number;
    maxDelayMs?: number;
    jitter?: number;
  };
  /** The offline queue: at most `max` requests (default 100), `overflow` policy (default "reject-new"). */
  queue?: { max?: number; overflow?: OverflowPolicy };
  /** Refresh this long before `exp` (default 60000; at most a third of the remaining lifetime). */
  refreshBeforeExpiryMs?: number;
}

export interface RequestOptions {
  /** The promise settles within this time, queueing and retries included. */
  timeoutMs?: number;
  /** Retry retryable codes (default true). */
  retry?: boolean;
  /** Queue while not registered (default true); false rejects with DISCONNECTED at once. */
  queue?: boolean;
}

export type PushHandler<T = unknown> = (payload: T) => unknown;

export interface Client {
  readonly state: ClientState;
  readonly userId: string;
  /** The socket's rooms from the last register or room ack. */
  readonly rooms: readonly string[];
  /** When the current token expires (ms since the epoch), or null. */
  readonly tokenExpiresAt: number | null;
  /** Requests waiting in the offline queue. */
  readonly queued: number;
  /** The underlying socket.io-client socket, for debugging. */
  readonly socket: Socket;
  connect(): void;
  /** Disconnects for good; pending and queued requests reject with CLOSED. */
  close(): void;
  onState(listener: (change: StateChange) => void): () => void;
  /** A push handler; when the push asks for an ack, the return value (or resolved promise) is the ack. */
  on<T = unknown>(event: string, handler: PushHandler<T>): () => void;
  /** Every push (without acks), e.g. for a log. */
  onAny(handler: (event: string, payload: unknown) => void): () => void;
  /** Sends an event to the backend; resolves with the backend's answer (`ack.data`). */
  request<T = unknown>(event: string, payload?: unknown, opts?: RequestOptions): Promise<T>;
  /**
   * Joins a room (allowed by the token's `rooms` claim); re-joined after
   * every reconnect. A history room is re-joined from the last position
   * seen, and the pushes missed meanwhile arrive first.
   */
  joinRoom(room: string): Promise<string[]>;
  leaveRoom(room: string): Promise<string[]>;
  /** A history room's re-join could not recover what was missed: refetch its state. */
  onRoomReset(listener: (reset: RoomReset) => void): () => void;
  /** The last position seen in a history room (pushes and join acks). */
  roomPosition(room: string): HistoryPosition | undefined;
  /**
   * Who is present in a presence room this socket is in (`presence:list`).
   * The changes arrive as `on("presence:join" | "presence:leave", ({ room, userId }) => …)`.
   */
  presence(room: string): Promise<string[]>;
  /**
   * A `room:signal` to the room's other sockets (typing indicators and the
   * like): not queued while offline, not retried; they arrive as
   * `on("room:signal", ({ room, name, data, from }) => …)`.
   */
  signal(room: string, name: string, data?: unknown): Promise<void>;
}
