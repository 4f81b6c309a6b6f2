import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { RoomPosition } from "../src/shared/events.js";
import { closeAllClients, connectRegistered, emitAck, type TestSocket } from "./support/client.js";
import { signToken } from "./support/fixtures.js";
import { readiness, until } from "./multihost-suite.js";
import { type RedisServer, startRedis } from "./support/redis.js";
import { type RunningServer, startServer } from "./support/server.js";

// History rooms across hosts: two real servers on one real redis-server
// (host A with two workers, host B with one). Positions come from Redis, a
// push on A is recovered on B, concurrent pushes from every worker arrive in
// offset order on each socket, and a flushed Redis starts a new epoch.

let redis: RedisServer;
let a: RunningServer;
let b: RunningServer;
let n = 0;
const fresh = (s: string) => `feed:${s}-${++n}-${Date.now().toString(36)}`;

beforeAll(async () => {
  redis = await startRedis();
  const env = {
    REDIS_URL: redis.url,
    QUERY_TIMEOUT_MS: "1500",
    HISTORY_ROOMS: "feed:*",
    HISTORY_SIZE: "50",
    // Order is under test, not the give-up time: under CI load a frame can
    // cross between processes later than the default 250 ms.
    HISTORY_REORDER_WAIT_MS: "3000",
  };
  [a, b] = await Promise.all([startServer({ env, workers: 2 }), startServer({ env, workers: 1 })]);
  // Each host sees all three workers (waitForHosts assumes as many on each).
  for (const s of [a, b]) {
    await until(`${s.apiUrl} to see 3 workers`, async () => {
      if ((await readiness(s)).status !== 200) return undefined;
      const st = (await (await s.api("GET", "/api/status")).json()) as { workers: unknown[] };
      return st.workers.length === 3 ? true : undefined;
    });
  }
}, 60_000);
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await redis?.stop();
});
afterEach(() => closeAllClients());

async function member(server: RunningServer, userId: string) {
  const socket = await connectRegistered(
    server.publicUrl,
    await signToken(userId, { rooms: ["*"] }),
    userId,
  );
  const got: RoomPosition[] = [];
  socket.on("msg", (_p: unknown, pos: RoomPosition) => got.push(pos));
  return { socket, got };
}
type JoinAck = { ok: boolean; recovered?: boolean; position?: { epoch: string; offset: number } };
const join = (s: TestSocket, room: string, since?: unknown) =>
  emitAck<JoinAck>(s, "room:join", since ? { room, since } : { room });
const push = async (server: RunningServer, room: string, i: number) => {
  const res = await server.api("POST", "/api/push", { room, event: "msg", payload: i });
  expect(res.status).toBe(202);
  return ((await res.json()) as { position: { epoch: string; offset: number } }).position;
};
const offsets = (got: RoomPosition[]) => got.map((p) => p.offset);
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("history rooms across hosts", () => {
  it("numbers pushes from both hosts in one sequence, and recovers on B what was pushed on A", async () => {
    const room = fresh("x");
    const onA = await member(a, "ha");
    const onB = await member(b, "hb");
    const start = (await join(onA.socket, room)).position!;
    expect((await join(onB.socket, room)).position).toEqual(start);
    expect(await push(a, room, 1)).toEqual({ epoch: start.epoch, offset: 1 });
    expect(await push(b, room, 2)).toEqual({ epoch: start.epoch, offset: 2 });
    await until("both sockets to get 2 pushes", async () =>
      onA.got.length === 2 && onB.got.length === 2 ? true : undefined,
    );
    expect(offsets(onB.got)).toEqual([1, 2]);

    const last = onB.got.at(-1)!;
    onB.socket.disconnect();
    for (const i of [3, 4, 5]) await push(a, room, i);
    const back = await member(b, "hb");
    const ack = await join(back.socket, room, { epoch: last.epoch, offset: last.offset });
    expect(ack).toMatchObject({ ok: true, recovered: true, position: { offset: 5 } });
    expect(offsets(back.got)).toEqual([3, 4, 5]);
    const text = await (await a.api("GET", "/metrics")).text();
    expect(text).toMatch(/socket_server_history_pushes_total\{store="redis"\} [1-9]/);
  });

  it("concurrent pushes through every worker of both hosts reach each socket once, in offset order", async () => {
    const room = fresh("race");
    const sockets = await Promise.all(
      ["r1", "r2", "r3", "r4"].map((u, i) => member(i % 2 ? b : a, u)),
    );
    for (const s of sockets) await join(s.socket, room);
    const total = 40;
    // Fresh connections spread over host A's two workers; B's one takes the rest.
    await Promise.all(range(1, total).map((i) => push(i % 2 ? a : b, room, i)));
    await until("every socket to get every push", async () =>
      sockets.every((s) => s.got.length >= total) ? true : undefined,
    );
    for (const s of sockets) expect(offsets(s.got)).toEqual(range(1, total));
  });

  it("a flushed Redis starts a new epoch: a join with the old one is told to refetch", async () => {
    const room = fresh("flush");
    const s = await member(b, "hf");
    await join(s.socket, room);
    const before = await push(a, room, 1);
    const cli = new Redis(redis.url);
    try {
      await cli.flushall();
    } finally {
      cli.disconnect();
    }
    const after = await push(a, room, 2);
    expect(after.epoch).not.toBe(before.epoch);
    expect(after.offset).toBe(1);
    expect(await join(s.socket, room, before)).toMatchObject({
      recovered: false,
      position: after,
    });
  });
});
