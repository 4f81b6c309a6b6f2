import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type http from "node:http";
import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";

/**
 * Who may see the dashboard: whoever knows DASHBOARD_TOKEN. A login opens a
 * session kept here, in the primary (so it outlives worker restarts), and the
 * browser holds only its random id in a cookie (HttpOnly, SameSite=Strict,
 * path /dashboard): the cookie is not the token, and logout deletes the
 * session, so a copied cookie is worthless afterwards. Scripts may send
 * `Authorization: Bearer <DASHBOARD_TOKEN>` instead.
 *
 * Every presented token (form, `?token=`, bearer) that is wrong counts
 * against the client address; see `createLoginLockout`.
 */

export const SESSION_COOKIE = "ss_dashboard";
const SESSION_TTL_MS = 12 * 3600 * 1000;
const MAX_SESSIONS = 10_000;
const MAX_TOKEN_LENGTH = 1024;

/** What a request shows for itself. `key` names a live session without being its cookie. */
export type Credentials =
  | { kind: "none" }
  | { kind: "token"; ok: boolean }
  | { kind: "session"; key: string; expiresAt: number };

export interface DashboardSession {
  /** Constant-time comparison with DASHBOARD_TOKEN. */
  checkToken(candidate: unknown): boolean;
  /**
   * A bearer token if the request carries one (it takes precedence), else a
   * live session from the cookie; an unknown, expired or ended cookie is "none".
   */
  credentials(req: http.IncomingMessage): Credentials;
  /** Opens a session; the Set-Cookie value that carries it. */
  issueCookie(req: http.IncomingMessage): string;
  /** Ends the request's session, if any; the Set-Cookie value that clears it. */
  endSession(req: http.IncomingMessage): string;
  readonly size: number;
}

const digest = (s: string) => createHash("sha256").update(s).digest();

export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq === -1) continue;
    out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

export function createDashboardSession(
  token: string,
  opts: {
    now?: () => number;
    maxSessions?: number;
    /** Called when a session ends before its time: logout or eviction. */
    onEnd?: (key: string) => void;
  } = {},
): DashboardSession {
  const now = opts.now ?? Date.now;
  const maxSessions = opts.maxSessions ?? MAX_SESSIONS;
  const tokenDigest = digest(token);
  // Keyed by a hash of the cookie's id, so that this map (or a heap dump)
  // holds nothing a browser could present. Insertion order is expiry order:
  // every session lives the same TTL.
  const sessions = new Map<string, number>();
  const keyOf = (id: string) => digest(id).toString("base64url");

  const checkToken = (candidate: unknown) =>
    typeof candidate === "string" &&
    candidate.length > 0 &&
    candidate.length <= MAX_TOKEN_LENGTH &&
    timingSafeEqual(digest(candidate), tokenDigest);

  const sweep = () => {
    const t = now();
    for (const [key, expiresAt] of sessions) {
      if (expiresAt > t) break;
      sessions.delete(key);
    }
  };

  const sessionOf = (req: http.IncomingMessage) => {
    const id = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
    if (!id || id.length > 64) return undefined;
    const key = keyOf(id);
    const expiresAt = sessions.get(key);
    if (expiresAt === undefined) return undefined;
    if (expiresAt <= now()) {
      sessions.delete(key);
      return undefined;
    }
    return { key, expiresAt };
  };

  // Behind a TLS-terminating proxy the cookie is also marked Secure.
  const attributes = (req: http.IncomingMessage, maxAge: number) =>
    [
      "Path=/dashboard",
      "HttpOnly",
      "SameSite=Strict",
      `Max-Age=${maxAge}`,
      ...(req.headers["x-forwarded-proto"] === "https" ? ["Secure"] : []),
    ].join("; ");

  return {
    checkToken,
    credentials(req) {
      const auth = req.headers.authorization;
      if (auth?.startsWith("Bearer "))
        return { kind: "token", ok: checkToken(auth.slice(7).trim()) };
      const s = sessionOf(req);
      return s ? { kind: "session", ...s } : { kind: "none" };
    },
    issueCookie(req) {
      sweep();
      // Bounded: a flood of logins drops the oldest sessions, never memory.
      while (sessions.size >= maxSessions) {
        const oldest = sessions.keys().next().value as string;
        sessions.delete(oldest);
        opts.onEnd?.(oldest);
      }
      const id = randomBytes(32).toString("base64url");
      sessions.set(keyOf(id), now() + SESSION_TTL_MS);
      return `${SESSION_COOKIE}=${id}; ${attributes(req, SESSION_TTL_MS / 1000)}`;
    },
    endSession(req) {
      const s = sessionOf(req);
      if (s) {
        sessions.delete(s.key);
        opts.onEnd?.(s.key);
      }
      return `${SESSION_COOKIE}=; ${attributes(req, 0)}`;
    },
    get size() {
      sweep();
      return sessions.size;
    },
  };
}

export interface LoginLockout {
  /** Seconds until `address` may present a token again; undefined when it may now. */
  lockedFor(address: string): Promise<number | undefined>;
  /** Counts a wrong token; the seconds of lockout when this failure started one. */
  fail(address: string): Promise<number | undefined>;
}

/**
 * Failed tokens per client address (in the primary's memory, where every
 * dashboard request is answered): `maxFailures` within `lockoutS` seconds
 * lock that address out for `lockoutS` seconds, whatever token it presents.
 * Other addresses are never affected, so guessing from one place cannot lock
 * the operator out. Entries expire on their own after `lockoutS`.
 */
export function createLoginLockout(opts: { maxFailures: number; lockoutS: number }): LoginLockout {
  // The blocking failure is the one that consumes past `points`.
  const points = opts.maxFailures - 1;
  const limiter = new RateLimiterMemory({
    keyPrefix: "dashboard-login",
    points,
    duration: opts.lockoutS,
    blockDuration: opts.lockoutS,
  });
  const seconds = (res: RateLimiterRes) => Math.max(1, Math.ceil(res.msBeforeNext / 1000));
  return {
    async lockedFor(address) {
      const res = await limiter.get(address);
      return res && res.consumedPoints > points ? seconds(res) : undefined;
    },
    async fail(address) {
      try {
        await limiter.consume(address);
        return undefined;
      } catch (res) {
        if (res instanceof RateLimiterRes) return seconds(res);
        throw res;
      }
    },
  };
}
