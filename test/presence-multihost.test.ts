import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitForHosts } from "./multihost-suite.js";
import { closeAllClients, connectRegistered, emitAck, type TestSocket } from "./support/client.js";
import { presenceNotices, record } from "./support/delivery-helpers.js";
import { signToken, TEST_DASHBOARD_TOKEN } from "./support/fixtures.js";
import { waitExit } from "./support/processes.js";
import { type RedisServer, startRedis } from "./support/redis.js";
import { type RunningServer, startServer } from "./support/server.js";
import { waitFor } from "./support/wait.js";

// Presence and signals across two hosts (one worker each) on one real
// redis-server: presence lives in Redis, so a user's tabs on two hosts are
// one presence, a reload onto the other host is no leave, and a host killed
// with kill -9 lets go of its users once its lease has run out.

const DELAY_MS = 700;
const LEASE_MS = 1_500;
let redis: RedisServer;
let a: RunningServer;
let b: RunningServer;

beforeAll(async () => {
  redis = await startRedis();
  const env = {
    REDIS_URL: redis.url,
    PRESENCE_ROOMS: "live:*",
    SIGNAL_ROOMS: "live:*",
    PRESENCE_LEAVE_DELAY_MS: String(DELAY_MS),
    PRESENCE_LEASE_MS: String(LEASE_MS),
    QUERY_TIMEOUT_MS: "1500",
  };
  [a, b] = await Promise.all([startServer({ workers: 1, env }), startServer({ workers: 1, env })]);
  await waitForHosts([a, b], 1);
}, 60_000);
afterAll(async () => {
  const codes = await Promise.all([a?.stop(), b?.stop()]);
  await redis?.stop();
  // B was killed on purpose by the last test.
  expect(codes[0]).toBe(0);
}, 30_000);
afterEach(() => closeAllClients());

const tab = async (s: RunningServer, userId: string, room: string): Promise<TestSocket> => {
  const socket = await connectRegistered(
    s.publicUrl,
    await signToken(userId, { rooms: ["live:*"] }),
    userId,
  );
  expect(await emitAck(socket, "room:join", { room })).toMatchObject({ ok: true });
  return socket;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = (what: string, check: () => boolean, ms = 10_000) =>
  waitFor(what, async () => (check() ? true : undefined), ms);
const listOf = async (s: TestSocket, room: string) =>
  (await emitAck<{ users?: string[] }>(s, "presence:list", { room })).users;

describe("presence across hosts (Redis)", () => {
  it("two tabs on two hosts are one presence; the leave comes after the last one and the delay", async () => {
    const room = "live:mh-tabs";
    const watcher = await tab(a, "mh-watch", room);
    const joins = presenceNotices(watcher, "presence:join", "mh-watch");
    const leaves = presenceNotices(watcher, "presence:leave", "mh-watch");
    const onA = await tab(a, "mh-ann", room);
    await until("ann's join", () => joins.length === 1);
    const onB = await tab(b, "mh-ann", room);
    await tab(b, "mh-bob", room);
    await until("bob's join", () => joins.length === 2);
    expect(joins.map((j) => j.userId)).toEqual(["mh-ann", "mh-bob"]);
    expect(await listOf(onB, room)).toEqual(["mh-ann", "mh-bob", "mh-watch"]);
    // The dashboard's rooms page reads the counts from Redis (through a worker).
    const page = await fetch(`${a.apiUrl}/dashboard/api/rooms?prefix=${room}`, {
      headers: { authorization: `Bearer ${TEST_DASHBOARD_TOKEN}` },
    });
    expect(await page.json()).toMatchObject({ rooms: [{ room, present: 3 }] });

    onA.close();
    await sleep(DELAY_MS + 500);
    expect(leaves).toEqual([]);
    const closedAt = Date.now();
    onB.close();
    await until("ann's leave", () => leaves.length === 1);
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(DELAY_MS - 50);
    expect(leaves).toEqual([{ room, userId: "mh-ann" }]);
    expect(await listOf(watcher, room)).toEqual(["mh-bob", "mh-watch"]);
  });

  it("a reload onto the other host within the delay is no leave", async () => {
    const room = "live:mh-reload";
    const watcher = await tab(b, "mh-watch2", room);
    const joins = presenceNotices(watcher, "presence:join", "mh-watch2");
    const leaves = presenceNotices(watcher, "presence:leave", "mh-watch2");
    const first = await tab(a, "mh-cat", room);
    await until("cat's join", () => joins.length === 1);
    first.close();
    await tab(b, "mh-cat", room);
    await sleep(DELAY_MS + 500);
    expect(joins.map((j) => j.userId)).toEqual(["mh-cat"]);
    expect(leaves).toEqual([]);
  });

  it("presence:list is refused to a non-member; signals cross hosts, not to the sender", async () => {
    const room = "live:mh-sig";
    const sender = await tab(a, "mh-dan", room);
    const peer = await tab(b, "mh-eve", room);
    const outsider = await connectRegistered(
      b.publicUrl,
      await signToken("mh-fay", { rooms: ["live:*"] }),
      "mh-fay",
    );
    expect(await emitAck(outsider, "presence:list", { room })).toMatchObject({
      error: { code: "FORBIDDEN" },
    });
    const gotSender = record(sender, "room:signal");
    const gotPeer = record(peer, "room:signal");
    const gotOutsider = record(outsider, "room:signal");
    expect(await emitAck(sender, "room:signal", { room, name: "typing", data: 1 })).toEqual({
      ok: true,
    });
    await until("the signal on host B", () => gotPeer.length === 1);
    expect(gotPeer).toEqual([{ room, name: "typing", data: 1, from: "mh-dan" }]);
    // A signal back: once the sender has it, the first one would have reached it too.
    await emitAck(peer, "room:signal", { room, name: "typing", data: 2 });
    await until("the answer on host A", () => gotSender.length === 1);
    expect(gotSender).toEqual([{ room, name: "typing", data: 2, from: "mh-eve" }]);
    expect(gotOutsider).toEqual([]);
  });

  it("a host killed with kill -9: its users leave after its lease and the delay", async () => {
    const room = "live:mh-kill";
    const watcher = await tab(a, "mh-watch3", room);
    const leaves = presenceNotices(watcher, "presence:leave", "mh-watch3");
    const joins = presenceNotices(watcher, "presence:join", "mh-watch3");
    await tab(b, "mh-gus", room);
    await until("gus's join", () => joins.length === 1);
    expect(await listOf(watcher, room)).toEqual(["mh-gus", "mh-watch3"]);

    const killedAt = Date.now();
    process.kill(-b.proc.pid!, "SIGKILL");
    await waitExit(b.proc, 5_000);
    await until("gus's leave", () => leaves.length === 1, LEASE_MS + DELAY_MS + 5_000);
    const tookMs = Date.now() - killedAt;
    expect(leaves).toEqual([{ room, userId: "mh-gus" }]);
    expect(tookMs).toBeGreaterThanOrEqual(DELAY_MS);
    expect(await listOf(watcher, room)).toEqual(["mh-watch3"]);
    console.log(`presence: a killed host's user left ${tookMs} ms after the kill`);
  });
});
