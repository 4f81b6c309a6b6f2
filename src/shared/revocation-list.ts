/**
 * Revoked tokens: single tokens by `jti`, and every token of a user issued
 * before a time. Each entry is kept until `until` (unix seconds), by when the
 * tokens it covers would have expired anyway. Every worker keeps a copy (the
 * handshake and `auth:refresh` check it without a round trip), the primary
 * keeps one for workers that restart, and with REDIS_URL a sorted set in
 * Redis carries it to the other hosts.
 */

export interface RevocationEntry {
  jti?: string;
  userId?: string;
  /** Unix seconds: tokens of `userId` with `iat` before this are revoked. */
  issuedBefore?: number;
  /** Unix seconds: the entry is dropped after this. */
  until: number;
}

export interface TokenIdentity {
  sub: string;
  jti?: string | undefined;
  iat: number | null;
}

export class RevocationList {
  private readonly byJti = new Map<string, number>();
  private readonly byUser = new Map<string, { issuedBefore: number; until: number }>();

  get size(): number {
    return this.byJti.size + this.byUser.size;
  }

  /** Adds or widens an entry; true when the list changed. */
  add(e: RevocationEntry, nowSeconds: number): boolean {
    if (e.until <= nowSeconds) return false;
    if (e.jti !== undefined) {
      const until = this.byJti.get(e.jti);
      if (until !== undefined && until >= e.until) return false;
      this.byJti.set(e.jti, e.until);
      return true;
    }
    if (e.userId !== undefined && e.issuedBefore !== undefined) {
      const cur = this.byUser.get(e.userId);
      if (cur && cur.issuedBefore >= e.issuedBefore && cur.until >= e.until) return false;
      // Widening both ends is conservative: it never un-revokes a token.
      this.byUser.set(e.userId, {
        issuedBefore: Math.max(cur?.issuedBefore ?? 0, e.issuedBefore),
        until: Math.max(cur?.until ?? 0, e.until),
      });
      return true;
    }
    return false;
  }

  /** A token without `iat` counts as issued before any time. */
  isRevoked(t: TokenIdentity, nowSeconds: number): boolean {
    if (t.jti !== undefined) {
      const until = this.byJti.get(t.jti);
      if (until !== undefined && until > nowSeconds) return true;
    }
    const u = this.byUser.get(t.sub);
    if (u && u.until > nowSeconds && (t.iat === null || t.iat < u.issuedBefore)) return true;
    return false;
  }

  /** Does this one entry cover the token? (Which sockets a new entry disconnects.) */
  static covers(e: RevocationEntry, t: TokenIdentity): boolean {
    if (e.jti !== undefined) return t.jti === e.jti;
    return (
      e.userId === t.sub &&
      e.issuedBefore !== undefined &&
      (t.iat === null || t.iat < e.issuedBefore)
    );
  }

  prune(nowSeconds: number): void {
    for (const [k, until] of this.byJti) if (until <= nowSeconds) this.byJti.delete(k);
    for (const [k, v] of this.byUser) if (v.until <= nowSeconds) this.byUser.delete(k);
  }

  entries(nowSeconds: number): RevocationEntry[] {
    const out: RevocationEntry[] = [];
    for (const [jti, until] of this.byJti) if (until > nowSeconds) out.push({ jti, until });
    for (const [userId, v] of this.byUser) {
      if (v.until > nowSeconds) out.push({ userId, issuedBefore: v.issuedBefore, until: v.until });
    }
    return out;
  }
}

/** Validates an entry that crossed a process or host boundary. */
export function isRevocationEntry(x: unknown): x is RevocationEntry {
  if (typeof x !== "object" || x === null) return false;
  const e = x as Record<string, unknown>;
  if (typeof e["until"] !== "number" || !Number.isFinite(e["until"])) return false;
  if (typeof e["jti"] === "string") return true;
  return typeof e["userId"] === "string" && typeof e["issuedBefore"] === "number";
}
