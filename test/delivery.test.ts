import { describe, expect, it } from "vitest";
import { connect, connectRegistered, emitAck } from "./support/client.js";
import {
  connectAndRegister,
  postFresh,
  record,
  registerAtOnce,
  slotOf,
  waitForCount,
  waitReady,
} from "./support/delivery-helpers.js";
import { signToken } from "./support/fixtures.js";
import { useServer, workerPids } from "./support/server.js";

// Delivery guarantees on one host with two workers (no Redis): offline store
// and replay, acks, idempotency keys, batch push, and a worker crash.

const MAX_PER_USER = 5;
const BATCH_MAX = 6;

const server = useServer({
  workers: 2,
  env: {
    OFFLINE_MAX_PER_USER: String(MAX_PER_USER),
    PUSH_BATCH_MAX: String(BATCH_MAX),
    ACK_TIMEOUT_MAX_MS: "10000",
    OFFLINE_MAX_TTL_SECONDS: "3600",
  },
});

let n = 0;
/** A user id no other test uses. */
const fresh = (name: string) => `${name}-${++n}-${Date.now().toString(36)}`;

async function push(body: unknown) {
  const res = await server.api("POST", "/api/push", body);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const store = (userId: string, text: string, extra: Record<string, unknown> = {}) =>
  push({ userId, event: "note", payload: { text }, options: { offline: "store", ...extra } });

/** Pushes an "ask" to `userId` and waits up to `ackTimeoutMs` for the acks of its sockets. */
const ask = (userId: string, payload: unknown, ackTimeoutMs: number) =>
  push({ userId, event: "ask", payload, options: { ackTimeoutMs } });

/** Connects `userId` with a new token, records its "note" events, then registers. */
const registerForNotes = async (userId: string) =>
  connectAndRegister(server.publicUrl, await signToken(userId), userId, "note");

describe("offline store and replay", () => {
  it("stores pushes for an offline user and replays them in order after register", async () => {
    const user = fresh("off");
    for (const text of ["one", "two", "three"]) {
      const r = await store(user, text);
      expect(r.status).toBe(202);
      expect(r.body).toMatchObject({ target: "user", stored: 1 });
    }
    const { socket, got, ack } = await registerForNotes(user);
    expect(ack).toMatchObject({ ok: true, replayed: 3 });
    await waitForCount(socket, "note", () => got.length, 3);
    expect(got).toEqual([{ text: "one" }, { text: "two" }, { text: "three" }]);
  });

  it("delivers nothing twice after a reconnect", async () => {
    const user = fresh("again");
    await store(user, "once");
    const token = await signToken(user);
    const first = await connectAndRegister(server.publicUrl, token, user, "note");
    await waitForCount(first.socket, "note", () => first.got.length, 1);
    first.socket.close();

    const second = await connectAndRegister(server.publicUrl, token, user, "note");
    expect(second.ack).toEqual({ ok: true, userId: user, rooms: [`user:${user}`] });
    // A live push after the register is the marker: it must be the only thing received.
    const live = await store(user, "live");
    expect(live.body).toMatchObject({ stored: 0 });
    await waitForCount(second.socket, "note", () => second.got.length, 1);
    expect(second.got).toEqual([{ text: "live" }]);
  });

  it("does not replay expired messages", async () => {
    const user = fresh("ttl");
    await store(user, "short", { ttlSeconds: 1 });
    await store(user, "long", { ttlSeconds: 600 });
    // Expiry is the thing under test: there is no event to wait for.
    await new Promise((r) => setTimeout(r, 1_200));
    const { socket, got, ack } = await registerForNotes(user);
    expect(ack).toMatchObject({ ok: true, replayed: 1 });
    await waitForCount(socket, "note", () => got.length, 1);
    expect(got).toEqual([{ text: "long" }]);
  });

  it("keeps the newest OFFLINE_MAX_PER_USER messages", async () => {
    const user = fresh("bound");
    for (let i = 0; i < MAX_PER_USER + 2; i++) await store(user, `m${i}`);
    const { socket, got, ack } = await registerForNotes(user);
    expect(ack).toMatchObject({ replayed: MAX_PER_USER });
    await waitForCount(socket, "note", () => got.length, MAX_PER_USER);
    expect(got.map((g) => (g as { text: string }).text)).toEqual(["m2", "m3", "m4", "m5", "m6"]);
  });

  it("replays a backlog larger than the slow-consumer limit to a polling client", async () => {
    const user = fresh("big");
    // MAX_PER_USER messages of 400 kB: 2 MB against the default 1 MiB per-socket limit.
    const chunk = "x".repeat(400_000);
    for (let i = 0; i < MAX_PER_USER; i++) await store(user, `${i}:${chunk}`);
    const socket = await connect(server.publicUrl, await signToken(user), {
      transports: ["polling"],
      upgrade: false,
    });
    const got = record<{ text: string }>(socket, "note");
    let disconnected = false;
    socket.on("disconnect", () => {
      disconnected = true;
    });
    const ack = await emitAck<{ replayed: number }>(socket, "register", { userId: user });
    expect(ack.replayed).toBe(MAX_PER_USER);
    await waitForCount(socket, "note", () => got.length, MAX_PER_USER, 20_000);
    expect(got.map((g) => g.text.split(":")[0])).toEqual(
      Array.from({ length: MAX_PER_USER }, (_, i) => String(i)),
    );
    expect(disconnected).toBe(false);
  });

  it("gives each stored message to exactly one of two tabs registering at once", async () => {
    const user = fresh("tabs");
    for (let i = 0; i < 4; i++) await store(user, `t${i}`);
    const token = await signToken(user);
    const tabs = await registerAtOnce([server.publicUrl, server.publicUrl], token, user, "note");
    expect(tabs.replayed).toBe(4);
    await waitForCount(tabs.sockets, "note", () => tabs.got.length, 4);
    const all = tabs.got.map((g) => (g as { text: string }).text).sort();
    expect(all).toEqual(["t0", "t1", "t2", "t3"]);
  });

  it("delivers live to an online user and stores for the offline ones of a userIds push", async () => {
    const on = fresh("on");
    const off = fresh("off");
    const s = await connectRegistered(server.publicUrl, await signToken(on), on);
    const got = record(s, "note");
    const r = await push({
      userIds: [on, off],
      event: "note",
      payload: { text: "both" },
      options: { offline: "store" },
    });
    expect(r.body).toMatchObject({ target: "users", stored: 1 });
    await waitForCount(s, "note", () => got.length, 1);
    const later = await registerForNotes(off);
    expect(later.ack).toMatchObject({ replayed: 1 });
    await waitForCount(later.socket, "note", () => later.got.length, 1);
    expect(later.got).toEqual([{ text: "both" }]);
  });

  it("without offline: store, a push to an offline user is not kept", async () => {
    const user = fresh("drop");
    await push({ userId: user, event: "note", payload: 1 });
    await push({ userId: user, event: "note", payload: 2, options: { offline: "drop" } });
    const { ack } = await registerForNotes(user);
    expect(ack.ok).toBe(true);
    expect(ack.replayed).toBeUndefined();
  });
});

describe("acks", () => {
  it("counts the ack of an acking client and answers before the timeout", async () => {
    const user = fresh("acker");
    const s = await connectRegistered(server.publicUrl, await signToken(user), user);
    s.on("ask", (_payload: unknown, ack: (r: unknown) => void) => ack({ seen: true }));
    const started = Date.now();
    const r = await ask(user, { q: 1 }, 8_000);
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ delivered: 1, acked: 1 });
    expect(typeof r.body["id"]).toBe("string");
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("reports a silent client as delivered but not acked, after the timeout", async () => {
    const user = fresh("silent");
    const s = await connectRegistered(server.publicUrl, await signToken(user), user);
    const got = record(s, "ask");
    const started = Date.now();
    const r = await ask(user, 1, 600);
    expect(r.body).toMatchObject({ delivered: 1, acked: 0 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
    expect(got).toHaveLength(1);
  });

  it("counts both tabs of a user on different workers", async () => {
    const user = fresh("two");
    const token = await signToken(user);
    // The kernel spreads new connections over the workers; keep connecting until both are used.
    const tabs = [await connectRegistered(server.publicUrl, token, user)];
    while (tabs.length < 20 && new Set(tabs.map(slotOf)).size < 2) {
      tabs.push(await connectRegistered(server.publicUrl, token, user));
    }
    const slots = tabs.map(slotOf);
    const first = tabs[0]!;
    const other = tabs.find((t) => slotOf(t) !== slotOf(first))!;
    expect(other).toBeDefined();
    for (const t of tabs) if (t !== first && t !== other) t.close();
    expect(new Set(slots).size).toBe(2);

    for (const t of [first, other]) {
      t.on("ask", (_p: unknown, ack: (r: unknown) => void) => ack("ok"));
    }
    const both = await ask(user, 1, 8_000);
    expect(both.body).toMatchObject({ delivered: 2, acked: 2 });

    other.off("ask");
    other.on("ask", () => {});
    const one = await ask(user, 2, 700);
    expect(one.body).toMatchObject({ delivered: 2, acked: 1 });
  });

  it("answers 0 delivered at once for a user with no socket, and stores with offline: store", async () => {
    const user = fresh("nobody");
    const started = Date.now();
    const r = await push({
      userId: user,
      event: "ask",
      payload: 1,
      options: { ackTimeoutMs: 5_000, offline: "store" },
    });
    expect(r.body).toMatchObject({ delivered: 0, acked: 0, stored: 1 });
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});

describe("idempotency keys", () => {
  it("accepts a key once across two workers and names the original push", async () => {
    const user = fresh("idem");
    const s = await connectRegistered(server.publicUrl, await signToken(user), user);
    const got = record(s, "note");
    const key = `order-${fresh("k")}`;
    const body = {
      userId: user,
      event: "note",
      payload: { n: 1 },
      options: { idempotencyKey: key },
    };
    // Separate connections: consecutive ones are handed to different workers.
    const first = await postFresh(server.apiUrl, "/api/push", body);
    const second = await postFresh(server.apiUrl, "/api/push", body);
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ duplicate: false });
    expect(second.status).toBe(202);
    expect(second.body).toMatchObject({ duplicate: true, id: first.body["id"] });

    // Many at once, on both workers: exactly one wins.
    const key2 = `${key}-burst`;
    const burst = await Promise.all(
      Array.from({ length: 6 }, () =>
        postFresh(server.apiUrl, "/api/push", { ...body, options: { idempotencyKey: key2 } }),
      ),
    );
    expect(burst.filter((r) => r.body["duplicate"] === false)).toHaveLength(1);
    expect(new Set(burst.map((r) => r.body["id"])).size).toBe(1);

    await waitForCount(s, "note", () => got.length, 2);
    // A marker push proves nothing else is on its way.
    await push({ userId: user, event: "note", payload: "end" });
    await waitForCount(s, "note", () => got.length, 3);
    expect(got).toEqual([{ n: 1 }, { n: 1 }, "end"]);
  });
});

describe("idempotency key reused for another request", () => {
  it("answers 409 CONFLICT naming the key, on either worker; the same request in another key order is a duplicate", async () => {
    const user = fresh("conflict");
    const s = await connectRegistered(server.publicUrl, await signToken(user), user);
    const got = record(s, "pay");
    const key = `pay-${fresh("k")}`;
    const pay = (payload: unknown) =>
      postFresh(server.apiUrl, "/api/push", {
        userId: user,
        event: "pay",
        payload,
        options: { idempotencyKey: key },
      });
    const first = await pay({ amount: 10, currency: "EUR" });
    expect(first.status).toBe(202);
    // The same request, its fields in another order: a retry, answered like the first.
    const again = await postFresh(server.apiUrl, "/api/push", {
      options: { idempotencyKey: key },
      payload: { currency: "EUR", amount: 10 },
      event: "pay",
      userId: user,
    });
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({ duplicate: true, id: first.body["id"] });
    // Another payload under the same key, on either worker (each fresh
    // connection lands on one the kernel picks).
    for (let i = 0; i < 6; i++) {
      const other = await pay({ amount: 99, currency: "EUR" });
      expect(other.status).toBe(409);
      const err = (other.body as { error: { code: string; message: string } }).error;
      expect(err.code).toBe("CONFLICT");
      expect(err.message).toContain(key);
    }
    // In a batch, the item says so and the others go through.
    const batch = await server.api("POST", "/api/push/batch", {
      pushes: [
        { userId: user, event: "pay", payload: { amount: 1 }, options: { idempotencyKey: key } },
        { userId: user, event: "pay", payload: "after" },
      ],
    });
    const results = (
      (await batch.json()) as { results: { status: number; error?: { code: string } }[] }
    ).results;
    expect(results.map((r) => r.status)).toEqual([409, 202]);
    expect(results[0]!.error?.code).toBe("CONFLICT");
    await waitForCount(s, "pay", () => got.length, 2);
    expect(got).toEqual([{ amount: 10, currency: "EUR" }, "after"]);
  });
});

describe("batch push", () => {
  it("delivers valid items in order and reports each invalid one", async () => {
    const user = fresh("batch");
    const s = await connectRegistered(server.publicUrl, await signToken(user), user);
    s.on("ask", (_p: unknown, ack: (r: unknown) => void) => ack(true));
    const got = record(s, "b");
    const res = await server.api("POST", "/api/push/batch", {
      pushes: [
        { userId: user, event: "b", payload: 1 },
        { userId: user, payload: "no event" },
        { userId: user, event: "ask", payload: 0, options: { ackTimeoutMs: 5_000 } },
        { userId: user, event: "b", payload: 2, options: { offline: "store", ttlSeconds: 0 } },
        { room: "lobby", event: "b", payload: 3, options: { offline: "store" } },
        { userId: user, event: "b", payload: 4 },
      ],
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      results: Record<string, unknown>[];
      accepted: number;
      rejected: number;
    };
    expect(body).toMatchObject({ accepted: 3, rejected: 3 });
    expect(body.results.map((r) => [r["index"], r["status"]])).toEqual([
      [0, 202],
      [1, 400],
      [2, 202],
      [3, 400],
      [4, 400],
      [5, 202],
    ]);
    expect(body.results[0]).toMatchObject({ target: "user", event: "b" });
    expect(typeof body.results[0]!["id"]).toBe("string");
    expect(body.results[2]).toMatchObject({ delivered: 1, acked: 1 });
    const paths = (i: number) =>
      (body.results[i]!["error"] as { code: string; details: { path: string }[] }).details.map(
        (d) => d.path,
      );
    expect(body.results[1]).toMatchObject({ error: { code: "VALIDATION_FAILED" } });
    expect(paths(1)).toContain("event");
    expect(paths(3)).toEqual(["options.ttlSeconds"]);
    expect(paths(4)).toEqual(["options.offline"]);
    await waitForCount(s, "b", () => got.length, 2);
    expect(got).toEqual([1, 4]);
  });

  it("refuses a batch that is not one with a 400 in the contract's format", async () => {
    const cases: [unknown, string][] = [
      [{ pushes: "no" }, "pushes"],
      [{ pushes: [] }, "pushes"],
      [
        {
          pushes: Array.from({ length: BATCH_MAX + 1 }, () => ({
            broadcast: true,
            event: "x",
            payload: 1,
          })),
        },
        "pushes",
      ],
      [{ pushes: [], extra: 1 }, "(body)"],
      [[1, 2], "(body)"],
    ];
    for (const [body, path] of cases) {
      const res = await server.api("POST", "/api/push/batch", body);
      expect(res.status).toBe(400);
      const err = (await res.json()) as { error: Record<string, unknown> };
      expect(err.error).toMatchObject({ code: "VALIDATION_FAILED" });
      expect(typeof err.error["requestId"]).toBe("string");
      expect(typeof err.error["timestamp"]).toBe("string");
      expect(JSON.stringify(err.error["details"])).toContain(path);
    }
  });

  it("is in the OpenAPI document", async () => {
    const doc = (await (await server.api("GET", "/api/openapi.json")).json()) as {
      paths: Record<string, unknown>;
      components: { schemas: Record<string, unknown> };
    };
    expect(doc.paths["/api/push/batch"]).toBeDefined();
    expect(doc.components.schemas["PushBatchRequest"]).toBeDefined();
    expect(JSON.stringify(doc.components.schemas["PushRequest"])).toContain("PushOptions");
    expect(JSON.stringify(doc.components.schemas["PushOptions"])).toContain("ackTimeoutMs");
  });
});

describe("option validation", () => {
  it("answers per-field errors for out-of-range ttl and ack timeouts", async () => {
    const base = { userId: "v", event: "e", payload: 1 };
    const cases: [Record<string, unknown>, string][] = [
      [{ offline: "store", ttlSeconds: 0 }, "options.ttlSeconds"],
      [{ offline: "store", ttlSeconds: 3_601 }, "options.ttlSeconds"],
      [{ offline: "store", ttlSeconds: 1.5 }, "options.ttlSeconds"],
      [{ ttlSeconds: 10 }, "options.ttlSeconds"],
      [{ ackTimeoutMs: 0 }, "options.ackTimeoutMs"],
      [{ ackTimeoutMs: 10_001 }, "options.ackTimeoutMs"],
      [{ ackTimeoutMs: "100" }, "options.ackTimeoutMs"],
      [{ offline: "later" }, "options.offline"],
      [{ idempotencyKey: "" }, "options.idempotencyKey"],
      [{ idempotencyKey: "has space" }, "options.idempotencyKey"],
    ];
    for (const [options, path] of cases) {
      const r = await push({ ...base, options });
      expect(r.status, JSON.stringify(options)).toBe(400);
      const details = (r.body["error"] as { details: { path: string }[] }).details;
      expect([...new Set(details.map((d) => d.path))]).toEqual([path]);
    }
    const both = await push({
      ...base,
      options: { ackTimeoutMs: -1, offline: "store", ttlSeconds: 0 },
    });
    const paths = (both.body["error"] as { details: { path: string }[] }).details.map(
      (d) => d.path,
    );
    expect(paths.sort()).toEqual(["options.ackTimeoutMs", "options.ttlSeconds"]);
  });

  it("refuses offline: store for rooms and broadcasts", async () => {
    for (const target of [{ room: "r" }, { rooms: ["a", "b"] }, { broadcast: true }]) {
      const r = await push({ ...target, event: "e", payload: 1, options: { offline: "store" } });
      expect(r.status).toBe(400);
      expect(JSON.stringify(r.body)).toContain("options.offline");
    }
  });
});

describe("metrics", () => {
  it("counts stored, replayed, expired, dropped, duplicates and acks for the whole host", async () => {
    const text = await (await server.api("GET", "/metrics")).text();
    const value = (series: string) => {
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      return line ? Number(line.slice(series.length + 1)) : 0;
    };
    // Lower bounds from the tests above (this file's server only).
    expect(value("socket_server_offline_stored_total")).toBeGreaterThanOrEqual(24);
    expect(value("socket_server_offline_replayed_total")).toBeGreaterThanOrEqual(20);
    expect(value("socket_server_offline_expired_total")).toBeGreaterThanOrEqual(1);
    expect(
      value('socket_server_offline_dropped_total{reason="user_limit"}'),
    ).toBeGreaterThanOrEqual(2);
    expect(value("socket_server_push_duplicates_total")).toBeGreaterThanOrEqual(6);
    expect(value('socket_server_push_acks_total{outcome="acked"}')).toBeGreaterThanOrEqual(4);
    expect(value('socket_server_push_acks_total{outcome="timeout"}')).toBeGreaterThanOrEqual(2);
  });
});

describe("worker crash", () => {
  it("loses nothing stored when every worker is killed between store and replay", async () => {
    const user = fresh("crash");
    for (const text of ["a", "b", "c"]) await store(user, text);
    const pids = await workerPids(server);
    expect(pids.length).toBe(2);
    const restarted = server.waitForOutput(
      /worker exited unexpectedly[\s\S]*worker exited unexpectedly/,
    );
    for (const pid of pids) process.kill(pid, "SIGKILL");
    await restarted;
    await waitReady(server.apiUrl);
    const { socket, got, ack } = await registerForNotes(user);
    expect(ack).toMatchObject({ ok: true, replayed: 3 });
    await waitForCount(socket, "note", () => got.length, 3);
    expect(got).toEqual([{ text: "a" }, { text: "b" }, { text: "c" }]);
  });
});
