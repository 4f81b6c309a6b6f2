import { describe, expect, it } from "vitest";
import { IdempotencyStore } from "../src/primary/idempotency-store.js";
import { OfflineStore } from "../src/primary/offline-store.js";
import type { Logger } from "pino";
import type { StoredMessage } from "../src/shared/ipc.js";
import { type DeliveryStore, PartialPutError } from "../src/worker/push/delivery-store.js";
import { withFallback } from "../src/worker/push/fallback-store.js";

// Pure units for the primary's stores; the multi-process behaviour is in
// delivery.test.ts. A settable clock stands in for time.

const clock = () => {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
};

const msg = (id: string, now: number, ttlMs = 60_000, payload = `"${id}"`): StoredMessage => ({
  id,
  event: "e",
  payloadJson: payload,
  storedAt: now,
  expiresAt: now + ttlMs,
});

const limits = { maxPerUser: 3, maxTotal: 5, maxTotalBytes: 1_000, leaseTimeoutMs: 60_000 };

describe("OfflineStore", () => {
  it("returns a user's messages oldest first, once", () => {
    const c = clock();
    const s = new OfflineStore(limits, { now: c.now });
    for (const id of ["a", "b", "c"]) s.put(["u"], msg(id, c.now()));
    const t = s.take("u", 0);
    expect(t.messages.map((m) => m.id)).toEqual(["a", "b", "c"]);
    s.confirm(t.leaseId!);
    expect(s.take("u", 0).messages).toEqual([]);
    expect(s.size).toEqual({ messages: 0, bytes: 0, users: 0 });
  });

  it("drops the oldest past OFFLINE_MAX_PER_USER and counts it", () => {
    const c = clock();
    const s = new OfflineStore(limits, { now: c.now });
    const results = ["a", "b", "c", "d"].map((id) => s.put(["u"], msg(id, c.now())));
    expect(results[3]).toEqual({ stored: 1, droppedOldest: 1, refused: 0 });
    expect(s.take("u", 0).messages.map((m) => m.id)).toEqual(["b", "c", "d"]);
  });

  it("refuses new messages when the total or the bytes are full, keeping older ones", () => {
    const c = clock();
    const s = new OfflineStore(limits, { now: c.now });
    expect(s.put(["u1", "u2", "u3"], msg("a", c.now()))).toEqual({
      stored: 3,
      droppedOldest: 0,
      refused: 0,
    });
    expect(s.put(["u4", "u5", "u6"], msg("b", c.now()))).toEqual({
      stored: 2,
      droppedOldest: 0,
      refused: 1,
    });
    const big = new OfflineStore({ ...limits, maxTotalBytes: 10 }, { now: c.now });
    expect(big.put(["u"], msg("x", c.now(), 60_000, '"0123456789"')).refused).toBe(1);
    expect(big.put(["u"], msg("y", c.now(), 60_000, "1")).stored).toBe(1);
  });

  it("never returns expired messages and counts them", () => {
    const c = clock();
    const s = new OfflineStore(limits, { now: c.now });
    s.put(["u"], msg("short", c.now(), 1_000));
    s.put(["u"], msg("long", c.now(), 60_000));
    c.advance(1_000);
    const t = s.take("u", 0);
    expect(t.messages.map((m) => m.id)).toEqual(["long"]);
    expect(t.expired).toBe(1);
  });

  it("sweeps expired messages everywhere", () => {
    const c = clock();
    const s = new OfflineStore(limits, { now: c.now });
    s.put(["u1", "u2"], msg("short", c.now(), 1_000));
    s.put(["u2"], msg("long", c.now(), 60_000));
    c.advance(2_000);
    expect(s.sweep()).toBe(2);
    expect(s.size.messages).toBe(1);
    expect(s.size.users).toBe(1);
  });

  it("gives a dead worker's lease back in front of newer messages", () => {
    const c = clock();
    const s = new OfflineStore(limits, { now: c.now });
    s.put(["u"], msg("a", c.now()));
    s.put(["u"], msg("b", c.now()));
    const t = s.take("u", 7);
    expect(t.messages).toHaveLength(2);
    s.put(["u"], msg("c", c.now()));
    expect(s.releaseOwner(7)).toBe(2);
    expect(s.take("u", 1).messages.map((m) => m.id)).toEqual(["a", "b", "c"]);
  });

  it("gives back only what a replay did not write", () => {
    const c = clock();
    const s = new OfflineStore(limits, { now: c.now });
    for (const id of ["a", "b", "c"]) s.put(["u"], msg(id, c.now()));
    const t = s.take("u", 1);
    s.restore(t.leaseId!, 2);
    expect(s.size.messages).toBe(1);
    expect(s.take("u", 1).messages.map((m) => m.id)).toEqual(["c"]);
  });

  it("a confirmed lease is not given back when its worker exits", () => {
    const c = clock();
    const s = new OfflineStore(limits, { now: c.now });
    s.put(["u"], msg("a", c.now()));
    const t = s.take("u", 3);
    s.confirm(t.leaseId!);
    expect(s.releaseOwner(3)).toBe(0);
    expect(s.take("u", 1).messages).toEqual([]);
  });

  it("confirms a lease as it is written: a worker that exits then gives back only the rest", () => {
    const c = clock();
    const s = new OfflineStore(limits, { now: c.now });
    for (const id of ["a", "b", "c"]) s.put(["u"], msg(id, c.now()));
    const t = s.take("u", 5);
    s.confirm(t.leaseId!, 1);
    s.confirm(t.leaseId!, 1);
    expect(s.size.messages).toBe(1);
    expect(s.releaseOwner(5)).toBe(1);
    expect(s.take("u", 1).messages.map((m) => m.id)).toEqual(["c"]);
  });
});

describe("IdempotencyStore", () => {
  it("accepts a key once within the window and names the first push", () => {
    const c = clock();
    const s = new IdempotencyStore({ windowMs: 1_000, maxKeys: 10, now: c.now });
    expect(s.claim("k", "id1", "fp")).toEqual({ duplicate: false });
    expect(s.claim("k", "id2", "fp")).toEqual({
      duplicate: true,
      originalId: "id1",
      fingerprint: "fp",
    });
    expect(s.claim("k", "id2", "other")).toMatchObject({ duplicate: true, fingerprint: "fp" });
    c.advance(1_000);
    expect(s.claim("k", "id3", "fp")).toEqual({ duplicate: false });
  });

  it("lets a retry through after the claimer releases, but not after another's release", () => {
    const s = new IdempotencyStore({ windowMs: 1_000, maxKeys: 10 });
    s.claim("k", "id1", "fp");
    s.release("k", "other");
    expect(s.claim("k", "id2", "fp").duplicate).toBe(true);
    s.release("k", "id1");
    expect(s.claim("k", "id3", "fp").duplicate).toBe(false);
  });

  it("forgets the oldest keys past the bound and sweeps expired ones", () => {
    const c = clock();
    const s = new IdempotencyStore({ windowMs: 1_000, maxKeys: 2, now: c.now });
    s.claim("a", "1", "fp");
    s.claim("b", "2", "fp");
    s.claim("c", "3", "fp");
    expect(s.size).toBe(2);
    expect(s.claim("a", "4", "fp").duplicate).toBe(false);
    c.advance(1_000);
    expect(s.sweep()).toBe(2);
  });
});

describe("withFallback (Redis, then the host's store)", () => {
  const m = msg("m1", 1_000);
  const store = (put: DeliveryStore["put"]): DeliveryStore =>
    ({ kind: "test", put, close: async () => {} }) as unknown as DeliveryStore;
  const quiet = { warn: () => {} } as unknown as Logger;

  it("keeps on this host only the users a partial put could not store in Redis", async () => {
    const here: string[][] = [];
    const main = store(async () => {
      throw new PartialPutError({ stored: 2, droppedOldest: 1, refused: 0 }, ["c"], new Error("x"));
    });
    const local = store(async (users) => {
      here.push([...users]);
      return { stored: users.length, droppedOldest: 0, refused: 0 };
    });
    const r = await withFallback(main, local, quiet).put(["a", "b", "c"], m);
    expect(here).toEqual([["c"]]);
    expect(r).toEqual({ stored: 3, droppedOldest: 1, refused: 0 });
  });

  it("keeps everything on this host when Redis stored nothing", async () => {
    const here: string[][] = [];
    const main = store(async () => {
      throw new Error("ECONNREFUSED");
    });
    const local = store(async (users) => {
      here.push([...users]);
      return { stored: users.length, droppedOldest: 0, refused: 0 };
    });
    expect(await withFallback(main, local, quiet).put(["a", "b"], m)).toMatchObject({ stored: 2 });
    expect(here).toEqual([["a", "b"]]);
  });
});
