import { SignJWT } from "jose";

// TEST FIXTURES ONLY: these secrets exist for the test suite and are never
// used outside it.
export const TEST_JWT_SECRET = "test-only-jwt-secret-0123456789abcdef";
export const TEST_API_KEY = "test-only-api-key-0123456789";
export const TEST_DASHBOARD_TOKEN = "test-only-dashboard-token-0123";

/** The fields of a forwarded event, in the order the backend contract gives them. */
export const FORWARDED_EVENT_FIELDS = [
  "id",
  "event",
  "payload",
  "userId",
  "socketId",
  "rooms",
  "receivedAt",
];

const secret = new TextEncoder().encode(TEST_JWT_SECRET);

export interface TokenOptions {
  rooms?: string[];
  expiresIn?: string | number;
  jti?: string;
  iat?: number;
  extra?: Record<string, unknown>;
  secret?: Uint8Array;
}

export function signToken(sub: string, opts: TokenOptions = {}): Promise<string> {
  const jwt = new SignJWT({ ...(opts.rooms ? { rooms: opts.rooms } : {}), ...opts.extra })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt(opts.iat)
    .setExpirationTime(opts.expiresIn ?? "1h");
  if (opts.jti) jwt.setJti(opts.jti);
  return jwt.sign(opts.secret ?? secret);
}
