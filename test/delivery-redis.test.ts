import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { closeAllClients, connectRegistered } from "./support/client.js";
import {
  connectAndRegister,
  postFresh,
  record,
  registerAtOnce,
  waitForCount,
  waitReady,
} from "./support/delivery-helpers.js";
import { signToken } from "./support/fixtures.js";
import { type RedisServer, startRedis } from "./support/redis.js";
import { type RunningServer, startServer } from "./support/server.js";

// The Redis-backed delivery store: two hosts (two servers on one real
// redis-server) behave as one for stored messages, idempotency keys and
// acks; while Redis is down a host keeps storing on its own.

let redis: RedisServer;
let hostA: RunningServer;
let hostB: RunningServer;

beforeAll(async () => {
  redis = await startRedis();
  const env = { REDIS_URL: redis.url, REDIS_KEY_PREFIX: `ss-test-${Date.now()}` };
  [hostA, hostB] = await Promise.all([
    startServer({ workers: 2, env }),
    startServer({ workers: 1, env }),
  ]);
});
afterAll(async () => {
  const codes = await Promise.all([hostA?.stop(), hostB?.stop()]);
  await redis?.stop();
  expect(codes).toEqual([0, 0]);
});
afterEach(() => closeAllClients());

/** Waits until every worker's delivery-store connection is back (CLIENT LIST names them). */
async function waitForStoreClients(count: number, timeoutMs = 15_000): Promise<void> {
  const r = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await r.connect();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const list = (await r.client("LIST")) as string;
      const named = list.split("\n").filter((l) => l.includes("name=socket-server:delivery"));
      if (named.length >= count) return;
      if (Date.now() > deadline) throw new Error(`only ${named.length} of ${count} store clients`);
      await new Promise((res) => setTimeout(res, 100));
    }
  } finally {
    r.disconnect();
  }
}

let n = 0;
const fresh = (name: string) => `${name}-${++n}-${Date.now().toString(36)}`;

async function push(host: RunningServer, body: unknown) {
  const res = await host.api("POST", "/api/push", body);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
const store = (host: RunningServer, userId: string, text: string) =>
  push(host, { userId, event: "note", payload: { text }, options: { offline: "store" } });

describe("Redis-backed delivery across two hosts", () => {
  it("replays on host B what host A stored, in order, once", async () => {
    const user = fresh("roam");
    for (const text of ["1", "2", "3"]) {
      expect((await store(hostA, user, text)).body).toMatchObject({ stored: 1 });
    }
    const token = await signToken(user);
    const b = await connectAndRegister(hostB.publicUrl, token, user, "note");
    expect(b.ack).toMatchObject({ ok: true, replayed: 3 });
    await waitForCount(b.socket, "note", () => b.got.length, 3);
    expect(b.got).toEqual([{ text: "1" }, { text: "2" }, { text: "3" }]);

    const a = await connectAndRegister(hostA.publicUrl, token, user, "note");
    expect(a.ack.ok).toBe(true);
    expect(a.ack.replayed).toBeUndefined();
  });

  it("gives each message to one of two tabs registering at once on two hosts", async () => {
    const user = fresh("race");
    for (let i = 0; i < 5; i++) await store(hostB, user, `r${i}`);
    const token = await signToken(user);
    const tabs = await registerAtOnce([hostA.publicUrl, hostB.publicUrl], token, user, "note");
    expect(tabs.replayed).toBe(5);
    await waitForCount(tabs.sockets, "note", () => tabs.got.length, 5);
    const all = tabs.got.map((g) => (g as { text: string }).text).sort();
    expect(all).toEqual(["r0", "r1", "r2", "r3", "r4"]);
  });

  it("sees a user online on the other host and delivers live instead of storing", async () => {
    const user = fresh("there");
    const s = await connectRegistered(hostB.publicUrl, await signToken(user), user);
    const got = record(s, "note");
    const r = await store(hostA, user, "live");
    expect(r.body).toMatchObject({ stored: 0 });
    await waitForCount(s, "note", () => got.length, 1);
    expect(got).toEqual([{ text: "live" }]);
  });

  it("accepts an idempotency key once across hosts", async () => {
    const key = `pay-${fresh("k")}`;
    const body = { broadcast: true, event: "idem", payload: 1, options: { idempotencyKey: key } };
    const first = await postFresh(hostA.apiUrl, "/api/push", body);
    const second = await postFresh(hostB.apiUrl, "/api/push", body);
    const third = await postFresh(hostA.apiUrl, "/api/push", body);
    expect(first.body).toMatchObject({ duplicate: false });
    expect(second.body).toMatchObject({ duplicate: true, id: first.body["id"] });
    expect(third.body).toMatchObject({ duplicate: true, id: first.body["id"] });
    // The same key with another request, on the other host: 409 CONFLICT.
    const other = await postFresh(hostB.apiUrl, "/api/push", { ...body, payload: 2 });
    expect(other.status).toBe(409);
    expect((other.body as { error: { code: string } }).error.code).toBe("CONFLICT");
  });

  it("counts acks from tabs on both hosts", async () => {
    const user = fresh("acks");
    const token = await signToken(user);
    const ta = await connectRegistered(hostA.publicUrl, token, user);
    const tb = await connectRegistered(hostB.publicUrl, token, user);
    ta.on("ask", (_p: unknown, ack: (r: unknown) => void) => ack(1));
    tb.on("ask", (_p: unknown, ack: (r: unknown) => void) => ack(2));
    const r = await push(hostA, {
      userId: user,
      event: "ask",
      payload: 0,
      options: { ackTimeoutMs: 8_000 },
    });
    expect(r.body).toMatchObject({ delivered: 2, acked: 2 });
  });
});

describe("Redis down and back", () => {
  it("keeps storing on the host while Redis is down, and in Redis again once it is back", async () => {
    const user = fresh("outage");
    await redis.stop();
    const started = Date.now();
    const during = await store(hostA, user, "during");
    expect(during.status).toBe(202);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(during.body).toMatchObject({ stored: 1 });

    await redis.restart();
    await Promise.all([waitReady(hostA.apiUrl), waitReady(hostB.apiUrl), waitForStoreClients(3)]);
    const after = await store(hostA, user, "after");
    expect(after.body).toMatchObject({ stored: 1 });

    // On host A the user gets both: the host's copy and Redis', merged in push order.
    const token = await signToken(user);
    const a = await connectAndRegister(hostA.publicUrl, token, user, "note");
    expect(a.ack).toMatchObject({ replayed: 2 });
    await waitForCount(a.socket, "note", () => a.got.length, 2);
    expect(a.got).toEqual([{ text: "during" }, { text: "after" }]);
  });

  it("a message stored in Redis after the restart reaches the user on the other host", async () => {
    const user = fresh("back");
    await store(hostA, user, "x");
    const b = await connectAndRegister(hostB.publicUrl, await signToken(user), user, "note");
    expect(b.ack).toMatchObject({ replayed: 1 });
    await waitForCount(b.socket, "note", () => b.got.length, 1);
  });
});
