import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { closeAllClients, connectRegistered, emitAck } from "./support/client.js";
import { FORWARDED_EVENT_FIELDS, signToken } from "./support/fixtures.js";
import { type RedisServer, startRedis } from "./support/redis.js";
import { startInProcess, type TestServer } from "./support/in-process.js";

/**
 * FORWARD_TRANSPORT=redis-stream on a real 2-worker cluster and a real
 * redis-server: events are XADDed to the stream, read back with XRANGE and a
 * consumer group, and the ack means "queued".
 */

const KEY = "test:events";
const MAXLEN = 20;

type Ack = { ok: true; data: unknown } | { ok: false; error: { code: string; message: string } };

let redis: RedisServer;
let server: TestServer;
let reader: Redis;

beforeAll(async () => {
  // Small stream nodes so that `MAXLEN ~` trims visibly at a small length.
  redis = await startRedis(["--stream-node-max-entries", "5"]);
  reader = new Redis(redis.url, { maxRetriesPerRequest: 1, lazyConnect: true });
  reader.on("error", () => {});
  await reader.connect();
  server = await startInProcess({
    env: {
      REDIS_URL: redis.url,
      FORWARD_TRANSPORT: "redis-stream",
      FORWARD_STREAM_KEY: KEY,
      FORWARD_STREAM_MAXLEN: String(MAXLEN),
      FORWARD_LIFECYCLE: "true",
      BACKEND_ATTEMPT_TIMEOUT_MS: "500",
      BACKEND_DEADLINE_MS: "1500",
      // Small, so that the budget test's events are small: five events of
      // 900 KB took over 1.5 s to arrive under CI load, after the pause.
      FORWARD_MAX_PENDING_BYTES_PER_SOCKET: "20000",
      MAX_PAYLOAD_BYTES: "10000",
    },
  });
});
afterAll(async () => {
  const code = await server?.stop();
  reader?.disconnect();
  await redis?.stop();
  expect(code).toBe(0);
});
afterEach(() => closeAllClients());

async function user(userId: string, rooms?: string[]) {
  return connectRegistered(server.publicUrl, await signToken(userId, { rooms }), userId);
}

/** Stream entries as objects, with their stream ids. */
async function entries(): Promise<{ streamId: string; f: Record<string, string> }[]> {
  const raw = await reader.xrange(KEY, "-", "+");
  return raw.map(([streamId, fields]) => {
    const f: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
    return { streamId, f };
  });
}

async function until<T>(fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("forwarding to a Redis Stream", () => {
  it("XADDs the event with the documented fields; the ack carries the stream id", async () => {
    const s = await user("alice", ["chat:*"]);
    await emitAck(s, "room:join", { room: "chat:9" });
    const ack = await emitAck<Ack>(s, "chat:send", { text: "hi", n: [1, "é✓"] });
    expect(ack).toMatchObject({ ok: true, data: { queued: true } });
    const streamId = (ack as { data: { streamId: string } }).data.streamId;
    expect(streamId).toMatch(/^\d+-\d+$/);

    const entry = (await entries()).find((e) => e.streamId === streamId);
    expect(entry).toBeDefined();
    const f = entry!.f;
    expect(Object.keys(f)).toEqual(FORWARDED_EVENT_FIELDS);
    expect(f["id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(f["event"]).toBe("chat:send");
    expect(JSON.parse(f["payload"]!)).toEqual({ text: "hi", n: [1, "é✓"] });
    expect(f["userId"]).toBe("alice");
    expect(f["socketId"]).toBe(s.id);
    expect((JSON.parse(f["rooms"]!) as string[]).sort()).toEqual(["chat:9", "user:alice"]);
    expect(Date.parse(f["receivedAt"]!)).not.toBeNaN();
  });

  it("a consumer group reads what clients send", async () => {
    const group = `g${Date.now()}`;
    await reader.xgroup("CREATE", KEY, group, "$", "MKSTREAM");
    const s = await user("bob");
    for (let i = 0; i < 3; i++) {
      expect(await emitAck<Ack>(s, "order:place", { i })).toMatchObject({ ok: true });
    }
    const res = (await reader.xreadgroup(
      "GROUP",
      group,
      "worker-1",
      "COUNT",
      "100",
      "STREAMS",
      KEY,
      ">",
    )) as [string, [string, string[]][]][];
    const orders = res[0]![1]
      .map(([, fields]) => fields)
      .filter((fields) => fields[3] === "order:place")
      .map((fields) => JSON.parse(fields[5]!));
    expect(orders).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
  });

  it("lifecycle: connect and disconnect entries", async () => {
    const s = await user("carol");
    const socketId = s.id;
    await until(async () =>
      (await entries()).find((e) => e.f["event"] === "connect" && e.f["socketId"] === socketId),
    );
    s.disconnect();
    const gone = await until(async () =>
      (await entries()).find((e) => e.f["event"] === "disconnect" && e.f["socketId"] === socketId),
    );
    expect(gone.f["userId"]).toBe("carol");
    expect(JSON.parse(gone.f["payload"]!)).toEqual({ reason: "client namespace disconnect" });
    expect(JSON.parse(gone.f["rooms"]!)).toEqual(["user:carol"]);
  });

  it("binary payloads are refused and nothing is appended", async () => {
    const s = await user("dave");
    const ack = await emitAck<Ack>(s, "upload", Buffer.from([1, 2, 3]));
    expect(ack).toMatchObject({ ok: false, error: { code: "INVALID_PAYLOAD" } });
    // Lifecycle entries may land meanwhile; none may be the upload.
    expect(await emitAck<Ack>(s, "after-upload", {})).toMatchObject({ ok: true });
    const events = (await entries()).map((e) => e.f["event"]);
    expect(events).toContain("after-upload");
    expect(events).not.toContain("upload");
  });

  it("while Redis holds the appends, a socket's events over its byte budget are answered OVERLOADED at once", async () => {
    const s = await user("gina");
    const big = (i: number) => ({ i, blob: "x".repeat(9_000) });
    // Redis holds writes longer than the command timeout (500 ms): the
    // appends wait, then time out. Two ~9 KB events fit in the socket's
    // 20,000 bytes (FORWARD_MAX_PENDING_BYTES_PER_SOCKET here), not three.
    await reader.call("CLIENT", "PAUSE", "3000", "WRITE");
    const t0 = performance.now();
    const acks = await Promise.all(
      [0, 1, 2, 3, 4].map((i) =>
        emitAck<Ack>(s, "big", big(i)).then((ack) => ({ i, ack, ms: performance.now() - t0 })),
      ),
    );
    const held = acks.filter((a) => a.i < 2);
    const refused = acks.filter((a) => a.i >= 2);
    console.log(
      `stream paused: refused after ${refused.map((a) => Math.round(a.ms)).join(", ")} ms; ` +
        `held ones answered ${held.map((a) => `${a.ack.ok ? "ok" : a.ack.error.code} after ${Math.round(a.ms)} ms`).join(", ")}`,
    );
    for (const r of refused) {
      expect(r.ack).toMatchObject({ ok: false, error: { code: "OVERLOADED" } });
      for (const h of held) expect(r.ms).toBeLessThan(h.ms);
    }
    for (const h of held) expect(h.ack).not.toMatchObject({ error: { code: "OVERLOADED" } });
    await reader.call("CLIENT", "UNPAUSE");
    // Settled forwards gave their bytes back: the next big event is taken.
    expect(await emitAck<Ack>(s, "big", big(5))).toMatchObject({
      ok: true,
      data: { queued: true },
    });
    const statuses = (await (await server.api("GET", "/api/status")).json()) as {
      workers: { forwarding: { pendingBytes: number } }[];
    };
    for (const w of statuses.workers) expect(w.forwarding.pendingBytes).toBe(0);
  });

  it("the stream is capped near FORWARD_STREAM_MAXLEN", async () => {
    const s = await user("erin");
    for (let i = 0; i < 60; i++) await emitAck(s, "tick", { i });
    const len = await reader.xlen(KEY);
    expect(len).toBeGreaterThanOrEqual(MAXLEN);
    expect(len).toBeLessThan(MAXLEN + 10);
  });

  it("Redis down: BACKEND_UNAVAILABLE at once; back up: events flow again", async () => {
    const s = await user("frank");
    await redis.stop();
    const ack = await until(async () => {
      const t0 = performance.now();
      const a = await emitAck<Ack>(s, "while-down", {});
      return a.ok ? undefined : { a, ms: performance.now() - t0 };
    });
    console.log(`stream down → ${JSON.stringify(ack.a)} in ${ack.ms.toFixed(1)} ms`);
    expect(ack.a).toMatchObject({ ok: false, error: { code: "BACKEND_UNAVAILABLE" } });
    expect(ack.ms).toBeLessThan(1_500 + 1_000);
    const statuses = (await (await server.api("GET", "/api/status")).json()) as {
      workers: { forwarding: { transport: string; redis: string } }[];
    };
    expect(statuses.workers.some((w) => w.forwarding.redis === "down")).toBe(true);

    await redis.restart();
    await reader.connect().catch(() => {});
    const back = await until(async () => {
      const a = await emitAck<Ack>(s, "after-restart", { ok: 1 });
      return a.ok ? a : undefined;
    }, 15_000);
    expect(back).toMatchObject({ ok: true, data: { queued: true } });
    const got = await until(async () =>
      (await entries()).find((e) => e.f["event"] === "after-restart"),
    );
    expect(JSON.parse(got.f["payload"]!)).toEqual({ ok: 1 });
  });
});
