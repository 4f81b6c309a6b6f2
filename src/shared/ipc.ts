/**
 * Every message between the primary and its workers, as one tagged union per
 * direction. The cluster adapter shares the same channel with its own
 * messages; the guards below let each side ignore whatever is not ours.
 *
 * Requests (WorkerCalls, PrimaryCalls) carry an id and are answered under
 * their reply tag with the same id (src/shared/ipc-rpc.ts); the other
 * messages go one way. A tag is used in one direction only.
 */
import type { DisconnectReason, HistoryPosition } from "./events.js";
import type { HistoryAppend, HistoryRead } from "./history.js";
import type { CallSpec, ReplyMessage, RequestMessage } from "./ipc-rpc.js";
import type { ScrapeAnswer } from "./observability.js";
import type { RevocationEntry } from "./revocation-list.js";

/** A question every worker answers about its own sockets; the primary merges. */
export type Query =
  | { kind: "user"; userId: string }
  | { kind: "rooms"; prefix?: string }
  | { kind: "room"; room: string }
  | { kind: "status" }
  | { kind: "join"; room: string; userId: string }
  | { kind: "leave"; room: string; userId: string }
  | { kind: "disconnect-user"; userId: string; reason: DisconnectReason }
  | { kind: "revoke"; jti?: string; userId?: string; issuedBefore?: number; until: number }
  | { kind: "custom"; name: string; args: unknown }
  // Observability (answered by worker-metrics.ts): prom-client JSON, the
  // dashboard's per-second sample (log cursors keyed by worker pid), a rooms page.
  | { kind: "metrics" }
  | { kind: "dashboard"; logsAfter: Record<string, number> }
  | { kind: "dashboard-rooms"; after?: string; limit: number; prefix?: string; userRooms: boolean };

/**
 * Who puts each kind of query: "workers" (the HTTP API; with REDIS_URL also
 * to every other host) or only "primary" (its own observability). Keyed by
 * the Query union, so that a new kind has to be placed here.
 */
const QUERY_ASKED_BY: Record<Query["kind"], "workers" | "primary"> = {
  user: "workers",
  rooms: "workers",
  room: "workers",
  status: "workers",
  join: "workers",
  leave: "workers",
  "disconnect-user": "workers",
  revoke: "workers",
  custom: "workers",
  metrics: "primary",
  dashboard: "primary",
  "dashboard-rooms": "primary",
};

/** The kinds a worker puts to the cluster, the only ones another host may ask of this one. */
export const CLUSTER_QUERY_KINDS: ReadonlySet<string> = new Set(
  Object.keys(QUERY_ASKED_BY).filter((k) => QUERY_ASKED_BY[k as Query["kind"]] === "workers"),
);

/** The merged answer to a query: one reply per worker, and the workers that gave none. */
export interface QueryResult {
  replies: QueryReply[];
  missing: number[];
}

export interface QueryReply {
  slot: number;
  result: unknown;
  error?: string;
}

export interface WorkerLoad {
  slot: number;
  connections: number;
  /** Event-loop lag p99 over the last interval, ms. */
  lagMs: number;
  overloaded: boolean;
  /** Only in multi-host mode (REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS). */
  redis?: "up" | "down";
  /** Why Redis is down ("shard 10.0.0.7:6379 unreachable", "ECONNREFUSED"). */
  redisReason?: string;
}

/** Requests a worker makes of its primary. */
export interface WorkerCalls {
  /** A cluster query: the primary fans it out to every worker (this one included) and merges. */
  "ss:query": Call<{ q: Query; timeoutMs: number }, "ss:query-result", QueryResult>;
  /** An operation on the host's delivery stores (src/primary/delivery-stores.ts). */
  "ss:store": Call<{ op: StoreOp }, "ss:store-result", StoreResult>;
  /**
   * The users who have messages in the host's offline store now, for a
   * starting worker (src/worker/push/stored-users.ts); `ss:stored-users`
   * keeps it current from then on.
   */
  "ss:stored-users-all": Call<
    Record<never, never>,
    "ss:stored-users-all-result",
    { users: string[] }
  >;
  /** A push to history rooms: the host's sequencer gives each room its next position. */
  "ss:history-append": Call<HistoryAppend, "ss:history-appended", { positions: HistoryPosition[] }>;
  /** A recovery: the room's pushes after `since` (src/primary/room-history.ts). */
  "ss:history-read": Call<
    { room: string; since?: HistoryPosition },
    "ss:history-readout",
    HistoryRead
  >;
  /** A /metrics scrape that reached a worker: the primary's merged text. */
  "ss:scrape": Call<Record<never, never>, "ss:scrape-result", ScrapeAnswer>;
  /**
   * A stopping worker gives its listening socket on `port` back (the
   * net.Server travels as the message's handle); answered once the primary
   * accepts on it, after which the worker may close its own copy without
   * resetting the connections queued on it (src/primary/listeners.ts).
   */
  "ss:unlisten": Call<{ port: "public" | "api" }, "ss:unlistened", null>;
  /** `presence:list` on a host without Redis: who is present in the room (src/primary/room-presence.ts). */
  "ss:presence-list": Call<{ room: string }, "ss:presence-listed", { users: string[] }>;
}

/** Requests the primary makes of one worker. */
export interface PrimaryCalls {
  /** This worker's part of a cluster query (src/worker/local-queries.ts). */
  "ss:local-query": Call<{ q: Query }, "ss:local-result", unknown>;
  /**
   * Every revocation still in force, to a worker that just reported ready
   * (src/primary/revocation-keeper.ts); answered with how many were new to it.
   */
  "ss:revocations": Call<{ entries: RevocationEntry[] }, "ss:revocations-ok", { added: number }>;
  /**
   * Accept connections on this listening socket of `port` (the net.Server
   * travels as the message's handle; one socket of the public port's
   * SO_REUSEPORT group: src/worker/front-door.ts); answered once the worker accepts on it,
   * after which the primary closes its own copy. Sent to a worker once it
   * is ready.
   */
  "ss:listen": Call<{ port: "public" | "api" }, "ss:listening", null>;
}

interface Call<Request extends object, Reply extends string, Result> extends CallSpec {
  request: Request;
  reply: Reply;
  result: Result;
}

/** Each request's reply tag, at run time (TypeScript checks it against the call maps). */
export const WORKER_CALLS: { readonly [K in keyof WorkerCalls]: WorkerCalls[K]["reply"] } = {
  "ss:query": "ss:query-result",
  "ss:store": "ss:store-result",
  "ss:stored-users-all": "ss:stored-users-all-result",
  "ss:history-append": "ss:history-appended",
  "ss:history-read": "ss:history-readout",
  "ss:scrape": "ss:scrape-result",
  "ss:unlisten": "ss:unlistened",
  "ss:presence-list": "ss:presence-listed",
};
export const PRIMARY_CALLS: { readonly [K in keyof PrimaryCalls]: PrimaryCalls[K]["reply"] } = {
  "ss:local-query": "ss:local-result",
  "ss:revocations": "ss:revocations-ok",
  "ss:listen": "ss:listening",
};

/** A worker that stopped answering the heartbeat and was killed and replaced. */
export interface ReplacedWorker {
  worker: number;
  pid: number | undefined;
  reason: "hung";
  /** How long it had not answered, ms. */
  silentMs: number;
  /** ISO 8601. */
  at: string;
}

/** Worker → primary, one way. */
export type WorkerMessage =
  | { t: "ss:ready"; slot: number }
  | { t: "ss:load"; load: WorkerLoad }
  /** Pushes for users that may be on other workers, to route by the directory. */
  | { t: "ss:route"; items: DirectDelivery[] }
  /** A revocation learned from Redis (another host), for the primary to keep for restarts. */
  | { t: "ss:revocation-learned"; entry: RevocationEntry }
  /** `POST /api/admin/restart-workers`. */
  | { t: "ss:restart-workers" }
  /** Answer to the primary's heartbeat, sent from the worker's event loop. */
  | { t: "ss:pong"; seq: number }
  /**
   * Users whose room appeared (true) or vanished (false) on this worker, in
   * order, each with the `hostClock()` time of the change
   * (src/primary/user-directory.ts). Nobody waits for it.
   */
  | { t: "ss:users"; changes: [userId: string, present: boolean, at: number][] }
  /**
   * A connection this worker accepted that is not its own to serve (a
   * primary path, or a session another worker owns); the socket travels as
   * the message's handle, `head` is every byte read from it (latin1).
   */
  | { t: "ss:relay"; port: "public" | "api"; head: string }
  /**
   * A user's first socket on this worker entered a presence room (true) or
   * its last one left it (false), in order (src/primary/room-presence.ts).
   */
  | { t: "ss:presence"; changes: PresenceChange[] };

/** Primary → worker, one way. */
export type PrimaryMessage =
  /** A connection handed over; the socket travels as the message's handle. */
  | { t: "ss:conn"; port: "public" | "api"; head: string }
  | {
      t: "ss:state";
      ready: boolean;
      draining: boolean;
      workers: number;
      /** The host's readiness as the primary's /ready reports it. */
      reasons: string[];
      readyWorkers: number;
      /** The ports actually bound, once listening (PORT/API_PORT may be 0). */
      publicPort?: number;
      apiPort?: number;
      /** Workers the primary replaced because they hung, newest last. */
      replaced: ReplacedWorker[];
      /** Slots taking new sessions (ready, not shedding load), as the load reports say. */
      accepting: number[];
    }
  | { t: "ss:shutdown"; timeoutMs: number }
  /** The heartbeat (src/primary/heartbeat.ts): answer with `ss:pong`. */
  | { t: "ss:ping"; seq: number }
  /** Pushes for users this worker holds (src/primary/user-directory.ts). */
  | { t: "ss:deliver"; items: DirectDelivery[] }
  /** This worker's oldest `ss:route` not yet confirmed has gone on to the workers holding its users. */
  | { t: "ss:routed" }
  /**
   * Users whose queue in the host's offline store appeared (true: stored, or
   * given back by a lease) or went (false: taken, expired), in the order the
   * store saw it (src/worker/push/stored-users.ts).
   */
  | { t: "ss:stored-users"; changes: [userId: string, stored: boolean][] }
  /** Presence notices for this worker to emit to their rooms (the adapter carries them on). */
  | { t: "ss:presence-notice"; notices: PresenceNotices };

export type WorkerToPrimary =
  | WorkerMessage
  | RequestMessage<WorkerCalls>
  | ReplyMessage<PrimaryCalls>;
export type PrimaryToWorker =
  | PrimaryMessage
  | RequestMessage<PrimaryCalls>
  | ReplyMessage<WorkerCalls>;

/** Every tag, keyed by the unions so that none is left out (test/ipc.test.ts: none goes both ways). */
const WORKER_MESSAGES: Record<WorkerMessage["t"], true> = {
  "ss:ready": true,
  "ss:load": true,
  "ss:route": true,
  "ss:revocation-learned": true,
  "ss:restart-workers": true,
  "ss:pong": true,
  "ss:users": true,
  "ss:relay": true,
  "ss:presence": true,
};
const PRIMARY_MESSAGES: Record<PrimaryMessage["t"], true> = {
  "ss:conn": true,
  "ss:state": true,
  "ss:shutdown": true,
  "ss:ping": true,
  "ss:deliver": true,
  "ss:stored-users": true,
  "ss:routed": true,
  "ss:presence-notice": true,
};
export const WORKER_TO_PRIMARY_TAGS: ReadonlySet<string> = new Set<WorkerToPrimary["t"]>([
  ...(Object.keys(WORKER_MESSAGES) as WorkerMessage["t"][]),
  ...(Object.keys(WORKER_CALLS) as (keyof WorkerCalls)[]),
  ...Object.values(PRIMARY_CALLS),
]);
export const PRIMARY_TO_WORKER_TAGS: ReadonlySet<string> = new Set<PrimaryToWorker["t"]>([
  ...(Object.keys(PRIMARY_MESSAGES) as PrimaryMessage["t"][]),
  ...(Object.keys(PRIMARY_CALLS) as (keyof PrimaryCalls)[]),
  ...Object.values(WORKER_CALLS),
]);

function tagOf(msg: unknown): string | undefined {
  if (typeof msg !== "object" || msg === null) return undefined;
  const t = (msg as { t?: unknown }).t;
  return typeof t === "string" ? t : undefined;
}

export function isWorkerToPrimary(msg: unknown): msg is WorkerToPrimary {
  const t = tagOf(msg);
  return t !== undefined && WORKER_TO_PRIMARY_TAGS.has(t);
}

export function isPrimaryToWorker(msg: unknown): msg is PrimaryToWorker {
  const t = tagOf(msg);
  return t !== undefined && PRIMARY_TO_WORKER_TAGS.has(t);
}

/** The custom query a worker answers with Redis: `{ rooms }` → how many users are present in each. */
export const PRESENCE_COUNTS_QUERY = "presence:counts";

/** A (room, user) pair whose sockets on one worker went from none to some (true) or back. */
export type PresenceChange = [room: string, userId: string, present: boolean];
/** Joins and leaves decided by the host (or Redis), for a worker to emit. */
export type PresenceNotices = [kind: "join" | "leave", room: string, userId: string][];

/** One push to users, as the user directory routes it between workers. */
export interface DirectDelivery {
  users: string[];
  event: string;
  payload: unknown;
  /** userIds whose sockets must not receive it. */
  except?: string[];
  volatile?: boolean;
  /** `hostClock()` when the worker that took the request emitted it to its own sockets. */
  at?: number;
}

/**
 * Microseconds on the host's monotonic clock (CLOCK_MONOTONIC: one clock for
 * every process of the host), so that times taken in two workers compare.
 */
export function hostClock(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** A push kept for a user who was offline (payload as JSON text: compact, sized exactly). */
export interface StoredMessage {
  id: string;
  event: string;
  payloadJson: string;
  storedAt: number;
  expiresAt: number;
}

/**
 * Operations on the host's delivery stores (offline queue, idempotency keys),
 * which live in the primary so that every worker shares them and a worker
 * crash loses nothing (the `ss:store` request).
 */
export type StoreOp =
  | { op: "offline-put"; userIds: string[]; message: StoredMessage }
  | { op: "offline-take"; userId: string }
  /** `count`: how many more of the lease's messages were written (all when absent). */
  | { op: "offline-confirm"; leaseId: number; count?: number }
  /** `written`: how many of the lease's messages reached the socket before it went away. */
  | { op: "offline-restore"; leaseId: number; written?: number }
  | { op: "idem-claim"; key: string; id: string; fingerprint: string }
  | { op: "idem-release"; key: string; id: string };

/** Answer to `offline-put` (and the Redis store's put). */
export interface OfflinePutResult {
  /** Users the message was stored for. */
  stored: number;
  /** Older messages dropped to make room under OFFLINE_MAX_PER_USER. */
  droppedOldest: number;
  /** Users the message was not stored for because the store is full. */
  refused: number;
}

/** Answer to `offline-take`: the user's unexpired messages, oldest first. */
export interface OfflineTakeResult {
  messages: StoredMessage[];
  /** Messages of this user that had expired (removed, not returned). */
  expired: number;
  /** Set when messages were returned: confirm it after writing them, or restore it. */
  leaseId?: number;
}

/**
 * Answer to `idem-claim`: the first claim wins; a later one learns the
 * winner's id and request fingerprint (absent for keys stored before
 * fingerprints were kept).
 */
export type IdemClaimResult =
  | { duplicate: false }
  | { duplicate: true; originalId: string; fingerprint?: string };

/** What each store operation answers. */
export interface StoreResults {
  "offline-put": OfflinePutResult;
  "offline-take": OfflineTakeResult;
  "offline-confirm": null;
  "offline-restore": null;
  "idem-claim": IdemClaimResult;
  "idem-release": null;
}
export type StoreResult = StoreResults[StoreOp["op"]];

/**
 * Engine.IO session ids carry the slot of the worker that owns them
 * (`<slot>_<random>`), so whoever accepts a request of a session routes it
 * without a table to keep in sync and without a race on fresh sessions.
 */
export function sidForSlot(slot: number, random: string): string {
  return `${slot.toString(36)}_${random}`;
}

const SID_IN_REQUEST_LINE = /[?&]sid=([0-9a-z]{1,3})_/;

/** The slot encoded in the `sid` query parameter of an HTTP request line. */
export function slotFromRequestLine(line: string): number | undefined {
  const m = SID_IN_REQUEST_LINE.exec(line);
  if (!m) return undefined;
  const slot = Number.parseInt(m[1]!, 36);
  return Number.isSafeInteger(slot) ? slot : undefined;
}
