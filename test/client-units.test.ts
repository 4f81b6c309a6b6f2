import { describe, expect, it } from "vitest";
import { backoffDelay, retryDelay } from "../src/client/backoff.js";
import { BoundedQueue } from "../src/client/bounded-queue.js";
import { decodeTimeClaims, refreshDelayMs } from "../src/client/token.js";
import { signToken } from "./support/fixtures.js";

// Pure parts of the browser client: backoff, the retry hint, JWT time claims,
// the refresh schedule and the offline queue's drop policy.

const o = { baseMs: 100, maxMs: 1_000, jitter: 0.5 };

describe("backoff", () => {
  it("doubles per attempt, stays within ± jitter, and is capped", () => {
    expect([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, o, () => 0.5))).toEqual([
      100, 200, 400, 800, 1_000, 1_000,
    ]);
    expect(backoffDelay(2, o, () => 0)).toBe(200);
    expect(backoffDelay(2, o, () => 0.999_999)).toBe(600);
    for (let i = 0; i < 200; i++) expect(backoffDelay(20, o)).toBeLessThanOrEqual(1_000);
  });
  it("never retries earlier than the server's retryAfter hint", () => {
    expect(retryDelay(0, 2, o, () => 0)).toBe(2_000);
    expect(retryDelay(0, 2, o, () => 0.999)).toBeLessThan(3_000);
    expect(retryDelay(3, undefined, o, () => 0.5)).toBe(800);
    // A hint shorter than the backoff does not shorten it.
    expect(retryDelay(3, 0.1, o, () => 0.5)).toBe(800);
  });
});

describe("token time claims", () => {
  it("reads exp and iat without verifying, and rejects garbage", async () => {
    const token = await signToken("zoë", { expiresIn: 1_700_007_200, iat: 1_700_000_000 });
    expect(decodeTimeClaims(token)).toEqual({ iat: 1_700_000_000, exp: 1_700_007_200 });
    expect(decodeTimeClaims("nope")).toBeUndefined();
    expect(decodeTimeClaims("a.!!!.c")).toBeUndefined();
  });
  it("refreshes `lead` before expiry, but at two thirds of a short remaining life", () => {
    const now = 1_000_000;
    expect(refreshDelayMs(now / 1000 + 3_600, now, 60_000)).toBe(3_540_000);
    expect(refreshDelayMs(now / 1000 + 6, now, 60_000)).toBe(4_000);
    expect(refreshDelayMs(now / 1000 - 1, now, 60_000)).toBe(0);
    expect(refreshDelayMs(now / 1000 + 1e9, now, 60_000)).toBe(2 ** 31 - 1);
  });
});

describe("offline queue", () => {
  it("reject-new refuses the newcomer and keeps the order", () => {
    const q = new BoundedQueue<number>(2);
    expect(q.push(1)).toEqual({ accepted: true });
    expect(q.push(2)).toEqual({ accepted: true });
    expect(q.push(3)).toEqual({ accepted: false });
    expect(q.drain()).toEqual([1, 2]);
    expect(q.size).toBe(0);
  });
  it("drop-oldest makes room and names the dropped item", () => {
    const q = new BoundedQueue<number>(2, "drop-oldest");
    q.push(1);
    q.push(2);
    expect(q.push(3)).toEqual({ accepted: true, dropped: 1 });
    expect(q.remove(2)).toBe(true);
    expect(q.remove(2)).toBe(false);
    expect(q.drain()).toEqual([3]);
  });
});
