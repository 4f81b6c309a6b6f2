import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * The signature on forwarded requests, Stripe-style:
 * `x-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
 * The timestamp is signed with the body so that a captured request cannot be
 * replayed after the receiver's tolerance window; it is recomputed on every
 * retry for the same reason (the body, and so the event id, stays the same).
 */
export const SIGNATURE_HEADER = "x-signature";

/** `body` as sent: its text, or that text's UTF-8 bytes (the same signature). */
export function signatureHeader(
  secret: string,
  body: string | Uint8Array,
  nowSeconds = Math.floor(Date.now() / 1000),
): string {
  const v1 = createHmac("sha256", secret).update(`${nowSeconds}.`).update(body).digest("hex");
  return `t=${nowSeconds},v1=${v1}`;
}

export interface VerifyOptions {
  /** How far the timestamp may be from now, either way. */
  toleranceSeconds?: number;
  nowSeconds?: number;
}

/**
 * Checks a header made by `signatureHeader` (what a receiver does; the Go
 * example does the same). Several `v1=` entries are accepted so that a sender
 * may sign with an old and a new secret while the secret is rotated.
 */
export function verifySignature(
  secret: string,
  header: string | undefined,
  body: string,
  opts: VerifyOptions = {},
): boolean {
  if (!header) return false;
  let t: number | undefined;
  const candidates: string[] = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === "t" && /^\d{1,12}$/.test(value)) t = Number(value);
    else if (key === "v1" && /^[0-9a-f]{64}$/.test(value)) candidates.push(value);
  }
  if (t === undefined || candidates.length === 0) return false;
  const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > (opts.toleranceSeconds ?? 300)) return false;
  const expected = createHmac("sha256", secret).update(`${t}.${body}`).digest();
  return candidates.some((c) => timingSafeEqual(Buffer.from(c, "hex"), expected));
}
