import type { IdemClaimResult, OfflinePutResult, StoredMessage } from "../../shared/ipc.js";

/**
 * What the delivery features need from a store, whichever keeps it: the
 * primary (one host) or Redis (several hosts). Every method may reject when
 * the store is unreachable; callers decide what that means.
 */

export interface TakenMessages {
  messages: StoredMessage[];
  /** Messages of this user found expired and removed. */
  expired: number;
  /**
   * The first `written` messages (all, by default) were written to the
   * socket: they leave the store. May be called again with a larger count.
   */
  confirm(written?: number): Promise<void>;
  /** The messages past the first `written` could not be written: put them back in front. */
  restore(written?: number): Promise<void>;
}

export interface DeliveryStore {
  readonly kind: "primary" | "redis";
  put(userIds: readonly string[], message: StoredMessage): Promise<OfflinePutResult>;
  /**
   * Atomically leases the user's messages: two takes never return the same
   * message while its lease holds; it leaves the store once confirmed.
   */
  take(userId: string): Promise<TakenMessages>;
  /** First claim of a key within the window wins; later ones get the winner's id and fingerprint. */
  claim(key: string, id: string, fingerprint: string): Promise<IdemClaimResult>;
  release(key: string, id: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * A put that stored the message for some users and failed for others (a
 * Redis Cluster with one master down): the caller keeps the message for
 * `failedUsers` elsewhere, and adds `done` to what it stores there.
 */
export class PartialPutError extends Error {
  readonly done: OfflinePutResult;
  readonly failedUsers: string[];
  constructor(done: OfflinePutResult, failedUsers: string[], cause: unknown) {
    super(`stored for some users; ${failedUsers.length} failed`, { cause });
    this.done = done;
    this.failedUsers = failedUsers;
  }
}

export const nothingTaken: TakenMessages = {
  messages: [],
  expired: 0,
  confirm: async () => {},
  restore: async () => {},
};
