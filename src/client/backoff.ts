/**
 * Exponential backoff with jitter, the same shape socket.io-client uses for
 * reconnection (base · 2^attempt, ± jitter, capped), so that thousands of
 * clients that failed together do not retry together.
 */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** 0..1: the delay varies by up to this fraction either way. */
  jitter: number;
}

export function backoffDelay(
  attempt: number,
  o: BackoffOptions,
  random: () => number = Math.random,
): number {
  const exp = Math.min(o.maxMs, o.baseMs * 2 ** Math.max(0, attempt));
  const spread = exp * o.jitter * (random() * 2 - 1);
  return Math.round(Math.min(o.maxMs, Math.max(0, exp + spread)));
}

/**
 * The wait before retrying a refused request. A server hint (`retryAfter`,
 * seconds) is a floor: never earlier, plus a little jitter so that clients
 * refused in the same second do not come back in the same millisecond.
 */
export function retryDelay(
  attempt: number,
  retryAfterSeconds: number | undefined,
  o: BackoffOptions,
  random: () => number = Math.random,
): number {
  const backoff = backoffDelay(attempt, o, random);
  if (retryAfterSeconds === undefined || !(retryAfterSeconds > 0)) return backoff;
  const hinted = retryAfterSeconds * 1000;
  return Math.round(Math.max(backoff, hinted + random() * Math.min(1000, hinted * o.jitter)));
}
