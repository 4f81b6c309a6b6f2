import { createPublicKey, type KeyObject } from "node:crypto";
import { createRemoteJWKSet, errors, type JWTPayload, jwtVerify } from "jose";
import type { JwtSource } from "../../shared/config.js";

/**
 * Verifies a client JWT with jose. Used inline and inside the Piscina task
 * (auth-task.ts); both build the verifier from the same plain options, which
 * is all that crosses into a thread.
 */

export interface VerifyOptions {
  source: JwtSource;
  issuer?: string | undefined;
  audience?: string | undefined;
  algorithms?: string[] | undefined;
  /** Longest accepted `exp - iat` (or `exp - now` without `iat`), seconds. */
  maxLifetimeS?: number | undefined;
  /** How far `iat` may lie in the future, seconds. */
  clockSkewS?: number | undefined;
}

export interface VerifiedClaims {
  sub: string;
  exp: number;
  iat: number | null;
  jti?: string;
  rooms: string[];
}

export type VerifyResult =
  | { ok: true; claims: VerifiedClaims }
  | { ok: false; code: "AUTH_INVALID" | "AUTH_EXPIRED" | "AUTH_REVOKED"; reason: string };

const HMAC = ["HS256", "HS384", "HS512"];

export function createTokenVerifier(opts: VerifyOptions): (token: string) => Promise<VerifyResult> {
  const src = opts.source;
  let key: Uint8Array | KeyObject | ReturnType<typeof createRemoteJWKSet>;
  let algorithms = opts.algorithms;
  if (src.kind === "secret") {
    key = new TextEncoder().encode(src.secret);
    algorithms ??= HMAC;
  } else if (src.kind === "publicKey") {
    key = createPublicKey(src.pem);
  } else {
    key = createRemoteJWKSet(new URL(src.url), { cooldownDuration: 30_000 });
  }
  // A token without `exp` would be good forever, and a revocation is kept for
  // a bounded time only (REVOCATION_TTL_SECONDS): `exp` is required.
  const verifyOpts = {
    requiredClaims: ["exp"],
    ...(opts.issuer ? { issuer: opts.issuer } : {}),
    ...(opts.audience ? { audience: opts.audience } : {}),
    ...(algorithms ? { algorithms } : {}),
  };

  return async (token) => {
    if (typeof token !== "string" || token.length === 0 || token.length > 8192) {
      return { ok: false, code: "AUTH_INVALID", reason: "malformed" };
    }
    let payload: JWTPayload;
    try {
      // The union of key kinds needs one overload each; they behave the same.
      payload =
        typeof key === "function"
          ? (await jwtVerify(token, key, verifyOpts)).payload
          : (await jwtVerify(token, key, verifyOpts)).payload;
    } catch (err) {
      if (err instanceof errors.JWTExpired) {
        return { ok: false, code: "AUTH_EXPIRED", reason: "expired" };
      }
      const reason = err instanceof errors.JOSEError ? err.code : "verification failed";
      return { ok: false, code: "AUTH_INVALID", reason };
    }
    if (typeof payload.sub !== "string" || payload.sub.length === 0 || payload.sub.length > 128) {
      return { ok: false, code: "AUTH_INVALID", reason: "no sub claim" };
    }
    const now = Math.floor(Date.now() / 1000);
    const exp = payload.exp as number; // required and checked as a number by jose
    if (typeof payload.iat === "number" && payload.iat > now + (opts.clockSkewS ?? 0)) {
      return { ok: false, code: "AUTH_INVALID", reason: "iat in the future" };
    }
    if (opts.maxLifetimeS !== undefined) {
      const lifetime = exp - (typeof payload.iat === "number" ? payload.iat : now);
      if (lifetime > opts.maxLifetimeS) {
        return { ok: false, code: "AUTH_INVALID", reason: "lifetime over JWT_MAX_LIFETIME_S" };
      }
    }
    const rooms = (payload as { rooms?: unknown }).rooms;
    return {
      ok: true,
      claims: {
        sub: payload.sub,
        exp,
        iat: typeof payload.iat === "number" ? payload.iat : null,
        ...(typeof payload.jti === "string" ? { jti: payload.jti } : {}),
        rooms: Array.isArray(rooms)
          ? rooms.filter((r): r is string => typeof r === "string").slice(0, 100)
          : [],
      },
    };
  };
}
