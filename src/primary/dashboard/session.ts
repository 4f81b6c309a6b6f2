import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type http from "node:http";

/**
 * Who may see the dashboard: whoever knows DASHBOARD_TOKEN. After a login the
 * browser keeps a session cookie (HttpOnly, SameSite=Strict, path /dashboard)
 * that is not the token itself but an HMAC of an expiry keyed by the token:
 * it cannot be turned back into the token, and changing the token logs every
 * session out. Scripts may send `Authorization: Bearer <DASHBOARD_TOKEN>`.
 */

export const SESSION_COOKIE = "ss_dashboard";
const SESSION_TTL_SECONDS = 12 * 3600;

export interface DashboardSession {
  /** Constant-time comparison with DASHBOARD_TOKEN. */
  checkToken(candidate: unknown): boolean;
  /** True for a valid session cookie or bearer token. */
  authorized(req: http.IncomingMessage): boolean;
  /** Set-Cookie value for a new session. */
  issueCookie(req: http.IncomingMessage): string;
  clearCookie(req: http.IncomingMessage): string;
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
  now: () => number = Date.now,
): DashboardSession {
  const tokenDigest = digest(token);
  const key = createHmac("sha256", token).update("socket-server dashboard session v1").digest();
  const sign = (exp: string) => createHmac("sha256", key).update(exp).digest("base64url");

  const checkToken = (candidate: unknown) =>
    typeof candidate === "string" &&
    candidate.length > 0 &&
    candidate.length <= 1024 &&
    timingSafeEqual(digest(candidate), tokenDigest);

  const validCookie = (value: string | undefined) => {
    if (!value) return false;
    const dot = value.indexOf(".");
    if (dot === -1) return false;
    const exp = value.slice(0, dot);
    const mac = Buffer.from(value.slice(dot + 1));
    const expected = Buffer.from(sign(exp));
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) return false;
    return Number(exp) * 1000 > now();
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
    authorized(req) {
      const auth = req.headers.authorization;
      if (auth?.startsWith("Bearer ")) return checkToken(auth.slice(7).trim());
      return validCookie(parseCookies(req.headers.cookie).get(SESSION_COOKIE));
    },
    issueCookie(req) {
      const exp = String(Math.floor(now() / 1000) + SESSION_TTL_SECONDS);
      return `${SESSION_COOKIE}=${exp}.${sign(exp)}; ${attributes(req, SESSION_TTL_SECONDS)}`;
    },
    clearCookie(req) {
      return `${SESSION_COOKIE}=; ${attributes(req, 0)}`;
    },
  };
}
