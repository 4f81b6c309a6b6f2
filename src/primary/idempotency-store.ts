/**
 * Idempotency keys for one host without Redis, kept in the primary so that
 * two requests with the same key landing on different workers see the same
 * table. The first claim of a key within the window wins; later claims learn
 * the id and the request fingerprint of the push that won.
 *
 * Every key lives exactly `windowMs`, so insertion order is expiry order:
 * the sweep and the size bound both remove from the front of the Map.
 */

import type { IdemClaimResult } from "../shared/ipc.js";

export class IdempotencyStore {
  private readonly keys = new Map<string, { id: string; fingerprint: string; expiresAt: number }>();
  private readonly now: () => number;

  constructor(private readonly opts: { windowMs: number; maxKeys: number; now?: () => number }) {
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.keys.size;
  }

  claim(key: string, id: string, fingerprint: string): IdemClaimResult {
    const now = this.now();
    const held = this.keys.get(key);
    if (held && held.expiresAt > now) {
      return { duplicate: true, originalId: held.id, fingerprint: held.fingerprint };
    }
    // Re-inserting moves an expired key to the back, keeping the Map in expiry order.
    if (held) this.keys.delete(key);
    this.keys.set(key, { id, fingerprint, expiresAt: now + this.opts.windowMs });
    // Past the bound the oldest keys go first (documented: a duplicate that old gets through).
    while (this.keys.size > this.opts.maxKeys) {
      const oldest = this.keys.keys().next().value as string;
      this.keys.delete(oldest);
    }
    return { duplicate: false };
  }

  /** The push that claimed the key failed: let a retry through. Only the claimer may release. */
  release(key: string, id: string): void {
    if (this.keys.get(key)?.id === id) this.keys.delete(key);
  }

  sweep(): number {
    const now = this.now();
    let n = 0;
    for (const [key, v] of this.keys) {
      if (v.expiresAt > now) break;
      this.keys.delete(key);
      n += 1;
    }
    return n;
  }
}
