/**
 * Reads a JWT's time claims without verifying it: the client only needs to
 * know when to ask for the next token; the server does the verifying.
 */
export interface TimeClaims {
  /** Unix seconds. */
  exp?: number;
  iat?: number;
}

export function decodeTimeClaims(token: string): TimeClaims | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, "=")), (c) =>
      c.charCodeAt(0),
    );
    const claims = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
    const out: TimeClaims = {};
    if (typeof claims["exp"] === "number") out.exp = claims["exp"];
    if (typeof claims["iat"] === "number") out.iat = claims["iat"];
    return out;
  } catch {
    return undefined;
  }
}

/** setTimeout's ceiling (~24.8 days); longer delays fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * How long to wait before refreshing a token that expires at `exp`: `leadMs`
 * before expiry, but never later than two thirds of the remaining lifetime,
 * so short-lived tokens are refreshed well before the server's deadline.
 */
export function refreshDelayMs(exp: number, nowMs: number, leadMs: number): number {
  const remaining = exp * 1000 - nowMs;
  if (remaining <= 0) return 0;
  const lead = Math.min(leadMs, remaining / 3);
  return Math.min(MAX_TIMER_MS, Math.max(0, Math.round(remaining - lead)));
}
