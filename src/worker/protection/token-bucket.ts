/**
 * A token bucket: `burst` tokens, refilled at `perSecond`. Used for the
 * per-socket event limit, which runs on every incoming event: it is
 * synchronous, allocates nothing and dies with its socket, which a keyed
 * store (rate-limiter-flexible's memory limiter: a promise, a map entry and a
 * timer per key) would not. A socket lives on one worker, so there is nothing
 * to share through Redis either.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes one token; returns 0 when allowed, else the seconds until one is available. */
  take(now: number): number {
    const elapsed = now - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed / 1000) * this.perSecond);
      this.last = now;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return (1 - this.tokens) / this.perSecond;
  }
}
