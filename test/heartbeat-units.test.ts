import { afterEach, describe, expect, it, vi } from "vitest";
import { createHeartbeat } from "../src/primary/heartbeat.js";

// The primary's hang detector, on vitest's fake timers.

afterEach(() => {
  vi.useRealTimers();
});

function setup(timeoutMs = 1_000) {
  vi.useFakeTimers();
  const pings: [number, number][] = [];
  const hung: [number, number][] = [];
  const hb = createHeartbeat({
    intervalMs: 100,
    timeoutMs,
    ping: (slot, seq) => pings.push([slot, seq]),
    onHung: (slot, silentMs) => hung.push([slot, silentMs]),
  });
  return { hb, pings, hung };
}

describe("heartbeat", () => {
  it("pings watched workers and reports one that stops answering, once", () => {
    const { hb, pings, hung } = setup();
    hb.watch(0);
    hb.watch(1);
    for (let i = 0; i < 30; i++) {
      vi.advanceTimersByTime(100);
      hb.answered(0); // slot 0 answers; slot 1 is silent
    }
    expect(pings.filter(([s]) => s === 0).length).toBe(30);
    expect(hung).toHaveLength(1);
    expect(hung[0]![0]).toBe(1);
    expect(hung[0]![1]).toBeGreaterThan(1_000);
    expect(hung[0]![1]).toBeLessThanOrEqual(1_100);
    // No more pings to a worker reported hung.
    const after = pings.filter(([s]) => s === 1).length;
    vi.advanceTimersByTime(1_000);
    expect(pings.filter(([s]) => s === 1).length).toBe(after);
    hb.stop();
  });

  it("watches a replacement afresh and forgets a worker that is gone", () => {
    const { hb, hung } = setup();
    hb.watch(0);
    vi.advanceTimersByTime(2_000);
    expect(hung.map(([s]) => s)).toEqual([0]);
    hb.forget(0);
    hb.watch(0);
    vi.advanceTimersByTime(500);
    hb.answered(0);
    expect(hb.silence().get(0)).toBe(0);
    vi.advanceTimersByTime(500);
    expect(hung).toHaveLength(1);
    hb.forget(0);
    vi.advanceTimersByTime(5_000);
    expect(hung).toHaveLength(1);
    hb.stop();
  });
});
