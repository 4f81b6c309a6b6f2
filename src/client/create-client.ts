import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";
import {
  type DisconnectReason,
  type RegisterOk,
  type RoomOk,
  SERVER_DISCONNECT_EVENT,
  type ServerDisconnectNotice,
} from "../shared/events.js";
import { errorOf, isAck } from "./acks.js";
import { type BackoffOptions, backoffDelay } from "./backoff.js";
import { AUTH_CODES, type ClientErrorCode } from "./client-error.js";
import type {
  Client,
  ClientOptions,
  ClientState,
  RequestOptions,
  StateChange,
} from "./client-types.js";
import { anyPushListener, pushListener } from "./push-listeners.js";
import { createRequestQueue } from "./request-queue.js";
import { createRoomPositions } from "./room-positions.js";
import { createTokenRefresh } from "./token-refresh.js";

/**
 * The wiring: one socket.io-client socket, the connection lifecycle
 * (register on every connect, reconnect where socket.io-client does not,
 * give up after a second token refusal), the request queue, the token
 * refresh and push listeners, and the Client object over them.
 */

export function createClient(options: ClientOptions): Client {
  const userId = options.userId;
  const recon = {
    baseMs: options.reconnection?.delayMs ?? 1_000,
    maxMs: options.reconnection?.maxDelayMs ?? 10_000,
    jitter: options.reconnection?.jitter ?? 0.5,
  } satisfies BackoffOptions;
  const maxReconnects = options.reconnection?.attempts ?? Number.POSITIVE_INFINITY;
  const registerTimeoutMs = options.registerTimeoutMs ?? 10_000;

  let state: ClientState = "offline";
  const stateListeners = new Set<(c: StateChange) => void>();
  /** After close() or failure: requests reject at once. Before connect() they queue. */
  let closed = false;
  let stopCode: ClientErrorCode = "CLOSED";
  let everRegistered = false;
  let registered = false;
  let rooms: string[] = [];
  const wantedRooms = new Set<string>();
  /** Reconnects this client starts itself (socket.io-client does not after a server disconnect or a refused handshake). */
  let ownAttempts = 0;
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  let lastNotice: ServerDisconnectNotice | undefined;

  const ioOptions: Partial<ManagerOptions & SocketOptions> = {
    autoConnect: false,
    // One manager per client: a shared one would tie clients' connections together.
    forceNew: true,
    reconnection: true,
    reconnectionDelay: recon.baseMs,
    reconnectionDelayMax: recon.maxMs,
    randomizationFactor: recon.jitter,
    reconnectionAttempts: maxReconnects,
    timeout: 20_000,
    // A callback, so socket.io-client asks for a token on every attempt.
    auth: (cb: (data: object) => void) => tokens.auth(cb),
    ...(options.path ? { path: options.path } : {}),
    ...(options.transports ? { transports: options.transports } : {}),
  };
  const socket: Socket = options.url === undefined ? io(ioOptions) : io(options.url, ioOptions);
  // History rooms: the last position per room, for `since` on every re-join.
  const positions = createRoomPositions();
  socket.onAny(positions.onPush);

  const requests = createRequestQueue({
    socket,
    canSend: () => registered && socket.connected,
    stopCode: () => (closed ? stopCode : undefined),
    onRooms: (r) => {
      rooms = r;
    },
    timeoutMs: options.requestTimeoutMs ?? 10_000,
    maxAttempts: options.retry?.attempts ?? 5,
    retry: {
      baseMs: options.retry?.baseDelayMs ?? 250,
      maxMs: options.retry?.maxDelayMs ?? 5_000,
      jitter: options.retry?.jitter ?? 0.5,
    },
    max: options.queue?.max ?? 100,
    overflow: options.queue?.overflow,
  });
  const tokens = createTokenRefresh({
    socket,
    getToken: options.getToken,
    isRegistered: () => registered,
    onRefused: (code, reason) => fail(code, reason),
    ackTimeoutMs: options.requestTimeoutMs ?? 10_000,
    leadMs: options.refreshBeforeExpiryMs ?? 60_000,
  });

  function setState(
    next: ClientState,
    reason: string,
    code?: ClientErrorCode | DisconnectReason,
  ): void {
    const previous = state;
    state = next;
    const change: StateChange = { state: next, previous, reason, ...(code ? { code } : {}) };
    for (const l of stateListeners) {
      try {
        l(change);
      } catch {
        // A listener's bug must not break the connection logic.
      }
    }
  }

  const notConnectedState = (): ClientState => (everRegistered ? "reconnecting" : "connecting");

  // --- connection lifecycle ---------------------------------------------------------------

  function fail(code: ClientErrorCode, reason: string): void {
    closed = true;
    stopCode = code;
    registered = false;
    clearTimeout(reconnectTimer);
    tokens.cancel();
    socket.disconnect();
    requests.rejectAll(code, reason);
    setState("failed", reason, code);
  }

  function authRefused(code: ClientErrorCode, message: string): void {
    if (!tokens.retryHandshake()) {
      fail(code, `token refused (${code}): ${message}`);
      return;
    }
    setState(notConnectedState(), `token refused (${code}); asking for a new one`, code);
    socket.connect();
  }

  /** Reconnects that socket.io-client leaves to the app: after a server disconnect or a refused handshake. */
  function scheduleReconnect(
    reason: string,
    code?: ClientErrorCode | DisconnectReason,
    minDelayMs = 0,
  ): void {
    if (ownAttempts >= maxReconnects) {
      fail("CLOSED", `gave up: ${reason}`);
      return;
    }
    const delay = Math.max(minDelayMs, backoffDelay(ownAttempts, recon));
    ownAttempts += 1;
    setState(notConnectedState(), reason, code);
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(() => {
      if (!closed && !socket.connected && !socket.active) socket.connect();
    }, delay);
  }

  function register(): void {
    const sid = socket.id;
    socket
      .timeout(registerTimeoutMs)
      .emit("register", { userId }, (err: Error | null, ack: unknown) => {
        if (closed || socket.id !== sid || !socket.connected) return;
        if (err) {
          socket.disconnect();
          return scheduleReconnect("no register ack in time");
        }
        if (!isAck(ack) || !ack.ok) {
          const { code, message, retryAfter } = errorOf(ack);
          if (code === "FORBIDDEN" || code === "INVALID_PAYLOAD") {
            return fail(code, `register refused: ${message}`);
          }
          socket.disconnect();
          return scheduleReconnect(`register refused: ${message}`, code, (retryAfter ?? 0) * 1000);
        }
        registered = true;
        tokens.resetRefusals();
        ownAttempts = 0;
        rooms = (ack as unknown as RegisterOk).rooms;
        const reason = everRegistered ? "re-registered" : "registered";
        everRegistered = true;
        tokens.schedule();
        for (const room of wantedRooms) {
          // Socket.IO keeps per-socket order, so these land before the queued requests.
          socket.emit("room:join", positions.joinRequest(room), (res: unknown) => {
            if (isAck(res) && res.ok) {
              rooms = (res as unknown as RoomOk).rooms;
              positions.joined(room, res as unknown as RoomOk);
            } else if (errorOf(res).code === "FORBIDDEN") wantedRooms.delete(room);
          });
        }
        setState("registered", reason);
        requests.flush();
      });
  }

  socket.on(SERVER_DISCONNECT_EVENT, (notice: ServerDisconnectNotice) => {
    lastNotice = notice;
  });

  socket.on("connect", () => {
    lastNotice = undefined;
    setState(notConnectedState(), "connected; registering");
    register();
  });

  socket.on("connect_error", (err: Error & { data?: { code?: string; retryAfter?: number } }) => {
    if (closed) return;
    // Still active: a transport error; socket.io-client retries with its own backoff.
    if (socket.active) return setState(notConnectedState(), `cannot connect: ${err.message}`);
    const tokenError = tokens.fetchError;
    if (tokenError !== undefined) {
      const why = tokenError instanceof Error ? tokenError.message : String(tokenError);
      return scheduleReconnect(`getToken failed: ${why}`);
    }
    const code = err.data?.code as ClientErrorCode | undefined;
    if (code && AUTH_CODES.has(code)) return authRefused(code, err.message);
    // Refused by the middleware for another reason (OVERLOADED): back off and retry.
    scheduleReconnect(`refused: ${code ?? err.message}`, code, (err.data?.retryAfter ?? 0) * 1000);
  });

  socket.on("disconnect", (reason: string) => {
    registered = false;
    tokens.cancel();
    const notice = lastNotice;
    lastNotice = undefined;
    if (closed) return;
    if (socket.active) return setState("reconnecting", reason);
    if (reason === "io client disconnect") return; // our own, handled where it was called
    const code = notice?.code;
    if (code === "AUTH_EXPIRED" || code === "AUTH_REVOKED") {
      return authRefused(code, notice?.message ?? code);
    }
    if (code === "KICKED") {
      // The backend wants this user gone; coming back by itself would defeat it.
      return setState("offline", notice?.message ?? "disconnected by the backend", code);
    }
    scheduleReconnect(notice ? notice.message : reason, notice?.code);
  });

  socket.io.on("reconnect_attempt", (attempt: number) => {
    if (!closed) setState("reconnecting", `reconnect attempt ${attempt}`);
  });
  socket.io.on("reconnect_failed", () => {
    if (!closed) fail("CLOSED", "gave up reconnecting");
  });

  const client: Client = {
    get state() {
      return state;
    },
    userId,
    get rooms() {
      return rooms;
    },
    get tokenExpiresAt() {
      return tokens.expiresAt;
    },
    get queued() {
      return requests.size;
    },
    socket,
    connect() {
      // Only from rest: before the first connect, after close(), KICKED or failure.
      if (state !== "offline" && state !== "failed") return;
      closed = false;
      tokens.resetRefusals();
      ownAttempts = 0;
      setState(notConnectedState(), "connect() called");
      socket.connect();
    },
    close() {
      if (closed && state !== "failed") return;
      closed = true;
      stopCode = "CLOSED";
      registered = false;
      clearTimeout(reconnectTimer);
      tokens.cancel();
      socket.disconnect();
      requests.rejectAll("CLOSED");
      setState("offline", "closed");
    },
    onState(listener) {
      stateListeners.add(listener);
      return () => void stateListeners.delete(listener);
    },
    on(event, handler) {
      const listener = pushListener(handler);
      socket.on(event, listener);
      return () => void socket.off(event, listener);
    },
    onRoomReset: positions.onReset,
    roomPosition: positions.position,
    onAny(handler) {
      const listener = anyPushListener(handler);
      socket.onAny(listener);
      return () => void socket.offAny(listener);
    },
    request<T>(event: string, payload?: unknown, opts: RequestOptions = {}) {
      return requests.send(event, payload, opts, (ack) => ack["data"]) as Promise<T>;
    },
    async joinRoom(room) {
      const ack = await requests.send("room:join", positions.joinRequest(room), {}, (a) => a);
      positions.joined(room, ack as Partial<RoomOk>);
      wantedRooms.add(room);
      return rooms;
    },
    async leaveRoom(room) {
      wantedRooms.delete(room);
      positions.left(room);
      await requests.send("room:leave", { room }, {}, (ack) => ack);
      return rooms;
    },
    presence(room) {
      return requests.send("presence:list", { room }, {}, (ack) => ack["users"]) as Promise<
        string[]
      >;
    },
    async signal(room, name, data) {
      // A signal is of the moment: late is useless, twice is noise.
      const req = data === undefined ? { room, name } : { room, name, data };
      await requests.send("room:signal", req, { queue: false, retry: false }, () => undefined);
    },
  };

  if (options.autoConnect ?? true) client.connect();
  return client;
}
