/**
 * Every message between the primary and its workers, as one tagged union.
 * The cluster adapter shares the same channel with its own messages; the
 * guards below let each side ignore whatever is not ours.
 */
import type { DisconnectReason } from "./events.js";

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

export interface WorkerLoad {
  slot: number;
  connections: number;
  /** Event-loop lag p99 over the last interval, ms. */
  lagMs: number;
  overloaded: boolean;
  /** Only with REDIS_URL. */
  redis?: "up" | "down";
}

export type PrimaryToWorker =
  | { t: "ss:conn"; port: "public" | "api"; head: string }
  | { t: "ss:query"; id: number; q: Query }
  | { t: "ss:query-result"; id: number; replies: QueryReply[]; missing: number[] }
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
    }
  | { t: "ss:shutdown"; timeoutMs: number }
  | { t: "ss:store-result"; id: number; result: unknown; error?: string }
  /** The user directory has applied the `ss:users` batch with this id. */
  | { t: "ss:users-ok"; id: number }
  /** Pushes for users this worker holds (src/primary/user-directory.ts). */
  | { t: "ss:deliver"; items: DirectDelivery[] }
  | { t: "ss:custom"; name: string; data: unknown };

export type WorkerToPrimary =
  | { t: "ss:ready"; slot: number }
  | { t: "ss:query"; id: number; q: Query; timeoutMs: number }
  | { t: "ss:reply"; id: number; slot: number; result: unknown; error?: string }
  | { t: "ss:load"; load: WorkerLoad }
  | { t: "ss:store"; id: number; op: StoreOp }
  /**
   * Users whose room appeared (true) or vanished (false) on this worker, in
   * order; a non-zero id asks for `ss:users-ok` once applied.
   */
  | { t: "ss:users"; id: number; changes: [userId: string, present: boolean][] }
  /** Pushes for users that may be on other workers, to route by the directory. */
  | { t: "ss:deliver"; items: DirectDelivery[] }
  | { t: "ss:custom"; name: string; data: unknown };

/** One push to users, as the user directory routes it between workers. */
export interface DirectDelivery {
  users: string[];
  event: string;
  payload: unknown;
  /** userIds whose sockets must not receive it. */
  except?: string[];
  volatile?: boolean;
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
 * crash loses nothing. Answered with `ss:store-result` carrying the same id.
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

export interface QueryReply {
  slot: number;
  result: unknown;
  error?: string;
}

function tagged(msg: unknown): msg is { t: string } {
  return (
    typeof msg === "object" &&
    msg !== null &&
    typeof (msg as { t?: unknown }).t === "string" &&
    (msg as { t: string }).t.startsWith("ss:")
  );
}

export function isPrimaryToWorker(msg: unknown): msg is PrimaryToWorker {
  return tagged(msg);
}

export function isWorkerToPrimary(msg: unknown): msg is WorkerToPrimary {
  return tagged(msg);
}

/**
 * Engine.IO session ids carry the slot of the worker that owns them
 * (`<slot>_<random>`), so the primary routes every request of a session
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
