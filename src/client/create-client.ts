import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";
import type { ErrorBody } from "../shared/errors.js";
import {
  type DisconnectReason,
  type RegisterOk,
  type RoomOk,
  SERVER_DISCONNECT_EVENT,
  type ServerDisconnectNotice,
} from "../shared/events.js";
import { type BackoffOptions, backoffDelay, retryDelay } from "./backoff.js";
import { BoundedQueue, type OverflowPolicy } from "./bounded-queue.js";
import {
  AUTH_CODES,
  CLIENT_SIDE_CODES,
  ClientError,
  type ClientErrorCode,
  RETRYABLE_CODES,
} from "./client-error.js";
import { decodeTimeClaims, refreshDelayMs } from "./token.js";

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
  /** Joins a room (allowed by the token's `rooms` claim); re-joined after every reconnect. */
  joinRoom(room: string): Promise<string[]>;
  leaveRoom(room: string): Promise<string[]>;
}

interface Job {
  event: string;
  payload: unknown;
  deadline: number;
  timeoutMs: number;
  attempts: number;
  retry: boolean;
  queue: boolean;
  done: boolean;
  timer?: ReturnType<typeof setTimeout>;
  retryTimer?: ReturnType<typeof setTimeout>;
  /** Forwarded events answer `{ ok, data }`; built-ins answer `{ ok, ...fields }`. */
  unwrap: (ack: { ok: true } & Record<string, unknown>) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: ClientError) => void;
}

type AckLike = { ok: true } & Record<string, unknown>;

function isAck(v: unknown): v is AckLike | { ok: false; error: ErrorBody } {
  return typeof v === "object" && v !== null && typeof (v as { ok?: unknown }).ok === "boolean";
}

function errorOf(ack: unknown): { code: ClientErrorCode; message: string; retryAfter?: number } {
  if (isAck(ack) && ack.ok === false && typeof ack.error?.code === "string") return ack.error;
  return { code: "INTERNAL", message: "the server sent a malformed ack" };
}

const INTERNAL_EVENTS = new Set<string>([SERVER_DISCONNECT_EVENT]);

export function createClient(options: ClientOptions): Client {
  const userId = options.userId;
  const recon = {
    baseMs: options.reconnection?.delayMs ?? 1_000,
    maxMs: options.reconnection?.maxDelayMs ?? 10_000,
    jitter: options.reconnection?.jitter ?? 0.5,
  } satisfies BackoffOptions;
  const maxReconnects = options.reconnection?.attempts ?? Number.POSITIVE_INFINITY;
  const retryOpts: BackoffOptions = {
    baseMs: options.retry?.baseDelayMs ?? 250,
    maxMs: options.retry?.maxDelayMs ?? 5_000,
    jitter: options.retry?.jitter ?? 0.5,
  };
  const maxAttempts = options.retry?.attempts ?? 5;
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  const registerTimeoutMs = options.registerTimeoutMs ?? 10_000;
  const refreshLeadMs = options.refreshBeforeExpiryMs ?? 60_000;
  const queue = new BoundedQueue<Job>(options.queue?.max ?? 100, options.queue?.overflow);

  let state: ClientState = "offline";
  const stateListeners = new Set<(c: StateChange) => void>();
  /** After close() or failure: requests reject at once. Before connect() they queue. */
  let closed = false;
  let stopCode: ClientErrorCode = "CLOSED";
  let everConnected = false;
  let everRegistered = false;
  let registered = false;
  let rooms: string[] = [];
  const wantedRooms = new Set<string>();
  let currentToken: string | undefined;
  let tokenError: unknown;
  /** Consecutive token refusals; one more `getToken` is allowed, then `failed`. */
  let authRetries = 0;
  let authRetryPending = false;
  /** Reconnects this client starts itself (socket.io-client does not after a server disconnect or a refused handshake). */
  let ownAttempts = 0;
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  let refreshTimer: ReturnType<typeof setTimeout> | undefined;
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
    auth: (cb: (data: object) => void) => {
      const reason: TokenRequest["reason"] = authRetryPending
        ? "auth-retry"
        : everConnected
          ? "reconnect"
          : "connect";
      authRetryPending = false;
      Promise.resolve()
        .then(() => options.getToken({ reason }))
        .then(
          (token) => {
            tokenError = undefined;
            currentToken = token;
            cb({ token });
          },
          (err: unknown) => {
            // The server answers AUTH_MISSING; tokenError marks it as ours, to retry later.
            tokenError = err;
            cb({});
          },
        );
    },
    ...(options.path ? { path: options.path } : {}),
    ...(options.transports ? { transports: options.transports } : {}),
  };
  const socket: Socket = options.url === undefined ? io(ioOptions) : io(options.url, ioOptions);

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

  // --- requests ---------------------------------------------------------------------------

  function settle(job: Job, err: ClientError | undefined, value?: unknown): void {
    if (job.done) return;
    job.done = true;
    clearTimeout(job.timer);
    clearTimeout(job.retryTimer);
    queue.remove(job);
    if (err) job.reject(err);
    else job.resolve(value);
  }

  function clientError(job: Job, code: ClientErrorCode, message?: string): ClientError {
    const text =
      message ??
      (code in CLIENT_SIDE_CODES
        ? CLIENT_SIDE_CODES[code as keyof typeof CLIENT_SIDE_CODES]
        : code);
    return new ClientError(code, text, { attempts: job.attempts, event: job.event });
  }

  function dispatch(job: Job): void {
    if (job.done) return;
    if (closed) {
      settle(job, clientError(job, stopCode));
      return;
    }
    if (!registered || !socket.connected) {
      if (!job.queue) {
        settle(job, clientError(job, "DISCONNECTED", "not connected"));
        return;
      }
      const { accepted, dropped } = queue.push(job);
      if (dropped)
        settle(dropped, clientError(dropped, "QUEUE_FULL", "dropped for a newer request"));
      if (!accepted) settle(job, clientError(job, "QUEUE_FULL"));
      return;
    }
    job.attempts += 1;
    const remaining = Math.max(1, job.deadline - Date.now());
    // With a timeout, socket.io-client also calls back when the connection drops.
    socket.timeout(remaining).emit(job.event, job.payload, (err: Error | null, ack: unknown) => {
      if (job.done) return;
      if (err) {
        const dropped = !socket.connected || err.message.includes("disconnected");
        return settle(job, clientError(job, dropped ? "DISCONNECTED" : "TIMEOUT"));
      }
      onAck(job, ack);
    });
  }

  function onAck(job: Job, ack: unknown): void {
    if (isAck(ack) && ack.ok) {
      const ok = ack as AckLike;
      if (Array.isArray(ok["rooms"])) rooms = ok["rooms"] as string[];
      settle(job, undefined, job.unwrap(ok));
      return;
    }
    const e = errorOf(ack);
    if (job.retry && RETRYABLE_CODES.has(e.code) && job.attempts < maxAttempts) {
      const delay = retryDelay(job.attempts - 1, e.retryAfter, retryOpts);
      if (Date.now() + delay < job.deadline) {
        job.retryTimer = setTimeout(() => dispatch(job), delay);
        return;
      }
    }
    settle(
      job,
      new ClientError(e.code, e.message, {
        retryAfter: e.retryAfter,
        details: isAck(ack) && !ack.ok ? ack.error.details : undefined,
        attempts: job.attempts,
        event: job.event,
      }),
    );
  }

  function enqueueRequest(
    event: string,
    payload: unknown,
    opts: RequestOptions,
    unwrap: Job["unwrap"],
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? requestTimeoutMs;
      const job: Job = {
        event,
        payload,
        deadline: Date.now() + timeoutMs,
        timeoutMs,
        attempts: 0,
        retry: opts.retry ?? true,
        queue: opts.queue ?? true,
        done: false,
        unwrap,
        resolve,
        reject,
      };
      job.timer = setTimeout(
        () =>
          settle(job, clientError(job, "TIMEOUT", `no answer to "${event}" in ${timeoutMs} ms`)),
        timeoutMs,
      );
      dispatch(job);
    });
  }

  function rejectAll(code: ClientErrorCode, message?: string): void {
    for (const job of queue.drain()) settle(job, clientError(job, code, message));
  }

  function flushQueue(): void {
    for (const job of queue.drain()) dispatch(job);
  }

  // --- tokens -----------------------------------------------------------------------------

  function tokenExpiresAt(): number | null {
    const exp = currentToken ? decodeTimeClaims(currentToken)?.exp : undefined;
    return exp === undefined ? null : exp * 1000;
  }

  function scheduleRefresh(delayMs?: number): void {
    clearTimeout(refreshTimer);
    const exp = currentToken ? decodeTimeClaims(currentToken)?.exp : undefined;
    if (exp === undefined) return;
    const delay = delayMs ?? refreshDelayMs(exp, Date.now(), refreshLeadMs);
    refreshTimer = setTimeout(() => void refresh("refresh"), delay);
  }

  /** Retry a refresh that got no verdict, well before the token runs out. */
  function refreshLater(): void {
    const at = tokenExpiresAt();
    const remaining = at === null ? 5_000 : at - Date.now();
    scheduleRefresh(Math.max(250, Math.min(5_000, remaining / 2)));
  }

  async function refresh(reason: TokenRequest["reason"]): Promise<void> {
    if (!registered) return;
    const sid = socket.id;
    let token: string;
    try {
      token = await options.getToken({ reason });
    } catch {
      return refreshLater();
    }
    if (!registered || socket.id !== sid) return; // a reconnect fetched its own token
    socket
      .timeout(requestTimeoutMs)
      .emit("auth:refresh", { token }, (err: Error | null, ack: unknown) => {
        if (socket.id !== sid || !registered) return;
        // No answer: an old server without auth:refresh, or a slow one. If the
        // token runs out, the server disconnects and the reconnect gets a new one.
        if (err) return refreshLater();
        if (isAck(ack) && ack.ok) {
          currentToken = token;
          authRetries = 0;
          return scheduleRefresh();
        }
        const { code } = errorOf(ack);
        if (AUTH_CODES.has(code) || code === "FORBIDDEN") {
          if (authRetries >= 1) return fail(code, `token refresh refused (${code})`);
          authRetries += 1;
          return void refresh("auth-retry");
        }
        refreshLater();
      });
  }

  // --- connection lifecycle ---------------------------------------------------------------

  function fail(code: ClientErrorCode, reason: string): void {
    closed = true;
    stopCode = code;
    registered = false;
    clearTimeout(reconnectTimer);
    clearTimeout(refreshTimer);
    socket.disconnect();
    rejectAll(code, reason);
    setState("failed", reason, code);
  }

  function authRefused(code: ClientErrorCode, message: string): void {
    if (authRetries >= 1) {
      fail(code, `token refused (${code}): ${message}`);
      return;
    }
    authRetries += 1;
    authRetryPending = true;
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
        authRetries = 0;
        ownAttempts = 0;
        rooms = (ack as unknown as RegisterOk).rooms;
        const reason = everRegistered ? "re-registered" : "registered";
        everRegistered = true;
        scheduleRefresh();
        for (const room of wantedRooms) {
          // Socket.IO keeps per-socket order, so these land before the queued requests.
          socket.emit("room:join", { room }, (res: unknown) => {
            if (isAck(res) && res.ok) rooms = (res as unknown as RoomOk).rooms;
            else if (errorOf(res).code === "FORBIDDEN") wantedRooms.delete(room);
          });
        }
        setState("registered", reason);
        flushQueue();
      });
  }

  socket.on(SERVER_DISCONNECT_EVENT, (notice: ServerDisconnectNotice) => {
    lastNotice = notice;
  });

  socket.on("connect", () => {
    everConnected = true;
    lastNotice = undefined;
    setState(notConnectedState(), "connected; registering");
    register();
  });

  socket.on("connect_error", (err: Error & { data?: { code?: string; retryAfter?: number } }) => {
    if (closed) return;
    // Still active: a transport error; socket.io-client retries with its own backoff.
    if (socket.active) return setState(notConnectedState(), `cannot connect: ${err.message}`);
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
    clearTimeout(refreshTimer);
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
      return tokenExpiresAt();
    },
    get queued() {
      return queue.size;
    },
    socket,
    connect() {
      // Only from rest: before the first connect, after close(), KICKED or failure.
      if (state !== "offline" && state !== "failed") return;
      closed = false;
      authRetries = 0;
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
      clearTimeout(refreshTimer);
      socket.disconnect();
      rejectAll("CLOSED");
      setState("offline", "closed");
    },
    onState(listener) {
      stateListeners.add(listener);
      return () => void stateListeners.delete(listener);
    },
    on(event, handler) {
      const listener = (...args: unknown[]) => {
        const last = args[args.length - 1];
        const ack = typeof last === "function" ? (last as (res: unknown) => void) : undefined;
        let result: unknown;
        try {
          result = handler(args[0] as never);
        } catch (err) {
          result = Promise.reject(err);
        }
        if (!ack) return;
        Promise.resolve(result).then(ack, (err: unknown) =>
          ack({
            ok: false,
            error: { code: "INTERNAL", message: err instanceof Error ? err.message : String(err) },
          }),
        );
      };
      socket.on(event, listener);
      return () => void socket.off(event, listener);
    },
    onAny(handler) {
      const listener = (event: string, ...args: unknown[]) => {
        if (!INTERNAL_EVENTS.has(event)) handler(event, args[0]);
      };
      socket.onAny(listener);
      return () => void socket.offAny(listener);
    },
    request<T>(event: string, payload?: unknown, opts: RequestOptions = {}) {
      return enqueueRequest(event, payload, opts, (ack) => ack["data"]) as Promise<T>;
    },
    async joinRoom(room) {
      await enqueueRequest("room:join", { room }, {}, (ack) => ack);
      wantedRooms.add(room);
      return rooms;
    },
    async leaveRoom(room) {
      wantedRooms.delete(room);
      await enqueueRequest("room:leave", { room }, {}, (ack) => ack);
      return rooms;
    },
  };

  if (options.autoConnect ?? true) client.connect();
  return client;
}
