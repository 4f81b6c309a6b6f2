import type { OfflinePutResult, OfflineTakeResult, StoredMessage } from "../shared/ipc.js";

/**
 * The host's offline queue without Redis: pushes for users with no socket,
 * kept in the primary so that every worker shares them and a worker crash
 * loses nothing. Per user, messages stay in push order.
 *
 * Bounds: OFFLINE_MAX_PER_USER (the user's oldest message makes room for the
 * new one), OFFLINE_MAX_TOTAL messages and OFFLINE_MAX_TOTAL_BYTES payload
 * bytes (a full store refuses the new message: older messages of other users
 * are not sacrificed for it). Each message has its own expiry.
 *
 * `take` hands a user's messages out under a lease: they come back to the
 * front of the queue if the worker that took them exits (or never confirms)
 * before it has written them to the socket, so a crash between take and
 * replay loses nothing (at worst it repeats them once).
 *
 * `usersChanged` hears, once per operation and in order, which users' queues
 * appeared or went (a leased message is not queued): the workers keep that
 * set to skip asking for a user with nothing stored (delivery-stores.ts).
 */

export interface OfflineLimits {
  maxPerUser: number;
  maxTotal: number;
  maxTotalBytes: number;
  /** A lease not confirmed within this time is given back to the queue. */
  leaseTimeoutMs: number;
}

interface Lease {
  owner: number;
  userId: string;
  messages: StoredMessage[];
  timer: NodeJS.Timeout;
}

const sizeOf = (m: StoredMessage) => Buffer.byteLength(m.payloadJson) + m.event.length;

export class OfflineStore {
  private readonly queues = new Map<string, StoredMessage[]>();
  private readonly leases = new Map<number, Lease>();
  private nextLease = 1;
  private count = 0;
  private bytes = 0;
  /** Queues that appeared or went during the current operation, for `usersChanged`. */
  private changes: [string, boolean][] = [];

  private readonly now: () => number;

  constructor(
    private readonly limits: OfflineLimits,
    private readonly hooks: {
      now?: () => number;
      /** Messages dropped outside a put (a restored lease overflowing its queue). */
      dropped?: (n: number) => void;
      /** Users whose queue appeared (true) or went (false), in order; once per operation. */
      usersChanged?: (changes: [userId: string, stored: boolean][]) => void;
    } = {},
  ) {
    this.now = hooks.now ?? Date.now;
  }

  /** Messages held (queued or leased) and their payload bytes. */
  get size(): { messages: number; bytes: number; users: number } {
    return { messages: this.count, bytes: this.bytes, users: this.queues.size };
  }

  /** The users who have messages queued (not counting leased ones). */
  users(): string[] {
    return [...this.queues.keys()];
  }

  put(userIds: readonly string[], message: StoredMessage): OfflinePutResult {
    const r: OfflinePutResult = { stored: 0, droppedOldest: 0, refused: 0 };
    const size = sizeOf(message);
    for (const userId of new Set(userIds)) {
      const q = this.queues.get(userId) ?? [];
      // A full queue gives up its oldest message, so that slot does not count against the total.
      const victim = q.length >= this.limits.maxPerUser ? q[0] : undefined;
      const freedBytes = victim ? sizeOf(victim) : 0;
      const freedCount = victim ? 1 : 0;
      if (
        this.count - freedCount + 1 > this.limits.maxTotal ||
        this.bytes - freedBytes + size > this.limits.maxTotalBytes
      ) {
        r.refused += 1;
        continue;
      }
      if (victim) {
        q.shift();
        this.count -= 1;
        this.bytes -= freedBytes;
        r.droppedOldest += 1;
      }
      q.push(message);
      this.count += 1;
      this.bytes += size;
      if (!this.queues.has(userId)) this.queued(userId, q);
      r.stored += 1;
    }
    this.report();
    return r;
  }

  /** Removes and returns the user's unexpired messages, oldest first, under a lease for `owner`. */
  take(userId: string, owner: number): OfflineTakeResult {
    const q = this.queues.get(userId);
    if (!q) return { messages: [], expired: 0 };
    this.unqueued(userId);
    this.report();
    const now = this.now();
    const messages: StoredMessage[] = [];
    let expired = 0;
    for (const m of q) {
      if (m.expiresAt <= now) {
        expired += 1;
        this.forget(m);
      } else {
        messages.push(m);
      }
    }
    if (messages.length === 0) return { messages, expired };
    const leaseId = this.nextLease++;
    const timer = setTimeout(() => this.restore(leaseId), this.limits.leaseTimeoutMs);
    timer.unref();
    this.leases.set(leaseId, { owner, userId, messages, timer });
    return { messages, expired, leaseId };
  }

  /**
   * The lease's first `count` messages (all by default) were written to the
   * socket: forget them for good; the lease keeps the rest.
   */
  confirm(leaseId: number, count?: number): void {
    const lease = this.leases.get(leaseId);
    if (!lease) return;
    const done = lease.messages.splice(0, count ?? lease.messages.length);
    for (const m of done) this.forget(m);
    if (lease.messages.length > 0) return;
    clearTimeout(lease.timer);
    this.leases.delete(leaseId);
  }

  /**
   * The messages were not delivered (past the first `written`, which were):
   * put them back in front of anything stored since.
   */
  restore(leaseId: number, written = 0): void {
    this.giveBack(leaseId, written);
    this.report();
  }

  private giveBack(leaseId: number, written = 0): void {
    const lease = this.leases.get(leaseId);
    if (!lease) return;
    clearTimeout(lease.timer);
    this.leases.delete(leaseId);
    for (const m of lease.messages.slice(0, written)) this.forget(m);
    const back = lease.messages.slice(written);
    if (back.length === 0) return;
    const q = this.queues.get(lease.userId) ?? [];
    q.unshift(...back);
    // Still counted: leased messages never left the totals.
    let dropped = 0;
    for (; q.length > this.limits.maxPerUser; dropped++) this.forget(q.shift()!);
    if (dropped > 0) this.hooks.dropped?.(dropped);
    if (!this.queues.has(lease.userId)) this.queued(lease.userId, q);
  }

  /** A worker exited: everything it had taken but not confirmed goes back. */
  releaseOwner(owner: number): number {
    let n = 0;
    for (const [id, lease] of this.leases) {
      if (lease.owner !== owner) continue;
      n += lease.messages.length;
      this.giveBack(id);
    }
    this.report();
    return n;
  }

  /** Removes expired messages everywhere; returns how many. */
  sweep(): number {
    const now = this.now();
    let expired = 0;
    for (const [userId, q] of this.queues) {
      if (q.every((m) => m.expiresAt > now)) continue;
      const keep = q.filter((m) => m.expiresAt > now);
      expired += q.length - keep.length;
      for (const m of q) if (m.expiresAt <= now) this.forget(m);
      if (keep.length) this.queues.set(userId, keep);
      else this.unqueued(userId);
    }
    this.report();
    return expired;
  }

  private queued(userId: string, q: StoredMessage[]): void {
    this.queues.set(userId, q);
    this.changes.push([userId, true]);
  }

  private unqueued(userId: string): void {
    this.queues.delete(userId);
    this.changes.push([userId, false]);
  }

  private report(): void {
    if (this.changes.length === 0) return;
    const changes = this.changes;
    this.changes = [];
    this.hooks.usersChanged?.(changes);
  }

  private forget(m: StoredMessage): void {
    this.count -= 1;
    this.bytes -= sizeOf(m);
  }
}
