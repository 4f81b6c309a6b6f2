import { describe, expect, it } from "vitest";
import { createDeadlines } from "../src/worker/deadlines.js";

/** The worker's one-timer deadlines (token expiry, register timeout), on real timers. */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function recorder(resolutionMs = 20) {
  const fired: { item: string; at: number }[] = [];
  const errors: unknown[] = [];
  const d = createDeadlines<string>({
    resolutionMs,
    onDue: (item) => {
      if (item.startsWith("throw")) throw new Error(item);
      fired.push({ item, at: Date.now() });
    },
    onError: (err) => errors.push(err),
  });
  return { d, fired, errors };
}

describe("deadlines on one timer", () => {
  it("fires each item once, never early, at most the resolution late, in deadline order", async () => {
    const { d, fired } = recorder(20);
    const t0 = Date.now();
    const due = { c: t0 + 150, a: t0 + 50, b: t0 + 100, a2: t0 + 50 };
    for (const [item, at] of Object.entries(due)) d.add(item, at);
    expect(d.size()).toBe(4);
    await sleep(300);
    expect(fired.map((f) => f.item)).toEqual(["a", "a2", "b", "c"]);
    for (const f of fired) {
      const at = due[f.item as keyof typeof due];
      expect(f.at).toBeGreaterThanOrEqual(at);
      // The resolution, plus a timer's lateness on a loaded machine.
      expect(f.at - at).toBeLessThan(20 + 100);
    }
    expect(d.size()).toBe(0);
    d.close();
  });

  it("a deleted item does not fire; its slot's neighbours still do", async () => {
    const { d, fired } = recorder();
    const at = Date.now() + 40;
    d.add("gone", at);
    d.add("stays", at);
    d.add("alone", at + 100);
    d.delete("gone", at);
    d.delete("alone", at + 100);
    d.delete("never-added", at);
    expect(d.size()).toBe(1);
    await sleep(250);
    expect(fired.map((f) => f.item)).toEqual(["stays"]);
    d.close();
  });

  it("an item added earlier than the armed timer fires on time", async () => {
    const { d, fired } = recorder();
    const t0 = Date.now();
    d.add("late", t0 + 400);
    d.add("early", t0 + 30);
    await sleep(150);
    expect(fired.map((f) => f.item)).toEqual(["early"]);
    d.close();
  });

  it("an item whose deadline has passed fires at the next turn", async () => {
    const { d, fired } = recorder();
    d.add("past", Date.now() - 1_000);
    expect(fired).toEqual([]);
    await sleep(30);
    expect(fired.map((f) => f.item)).toEqual(["past"]);
    d.close();
  });

  it("one throwing item does not strand the others, due now or later", async () => {
    const { d, fired, errors } = recorder();
    const at = Date.now() + 20;
    d.add("throw-1", at);
    d.add("same-slot", at);
    d.add("later", at + 60);
    await sleep(200);
    expect(fired.map((f) => f.item)).toEqual(["same-slot", "later"]);
    expect(errors).toHaveLength(1);
    d.close();
  });

  it("a deadline past setTimeout's range (~24.8 days) waits instead of firing at once", async () => {
    const { d, fired } = recorder();
    d.add("next-month", Date.now() + 30 * 24 * 3600 * 1000);
    d.add("soon", Date.now() + 20);
    await sleep(120);
    expect(fired.map((f) => f.item)).toEqual(["soon"]);
    expect(d.size()).toBe(1);
    d.close();
  });

  it("close stops the timer: nothing fires after it", async () => {
    const { d, fired } = recorder();
    d.add("x", Date.now() + 20);
    d.close();
    await sleep(80);
    expect(fired).toEqual([]);
  });
});

describe("deadlines under churn", () => {
  it("many items added and deleted at far-off deadlines leave the near ones on time", async () => {
    const { d, fired } = recorder();
    const far = Date.now() + 3_600_000;
    for (let i = 0; i < 5_000; i++) {
      d.add(`churn-${i}`, far + i * 100);
      d.delete(`churn-${i}`, far + i * 100);
    }
    d.add("kept-far", far);
    d.add("near", Date.now() + 30);
    expect(d.size()).toBe(2);
    await sleep(150);
    expect(fired.map((f) => f.item)).toEqual(["near"]);
    expect(d.size()).toBe(1);
    d.close();
  });
});
