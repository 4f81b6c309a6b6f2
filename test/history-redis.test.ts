import { cpSync, rmSync } from "node:fs";
import { join as joinPath } from "node:path";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { closeAllClients, connectRegistered, emitAck, type TestSocket } from "./support/client.js";
import { signToken } from "./support/fixtures.js";
import { redisCli } from "./support/redis-ha.js";
import { type RedisServer, startRedis } from "./support/redis.js";
import { type RunningServer, startServer } from "./support/server.js";
import { waitFor } from "./support/wait.js";

// History rooms when Redis may have rewound: replication and
// `appendfsync everysec` are asynchronous, so a failover or a restart can
// leave a room's key in place with its last increments lost. A real
// redis-server (AOF on) behind a forked server: the data is rewound for real
// (a lagging replica takes over; a restart from an older AOF), and the
// room's next join and push must start a new epoch instead of handing out
// offsets twice or recovering past pushes that are gone. Then Redis goes
// away altogether: the host's sequencer answers, honestly.

let redis: RedisServer;
let server: RunningServer;
let admin: Redis;
let n = 0;
const fresh = (s: string) => `feed:${s}-${++n}-${Date.now().toString(36)}`;

beforeAll(async () => {
  redis = await startRedis([
    ...["--appendonly", "yes", "--appendfsync", "always"],
    ...["--repl-diskless-sync-delay", "0"],
  ]);
  admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  admin.on("error", () => {});
  server = await startServer({
    workers: 1,
    env: {
      REDIS_URL: redis.url,
      QUERY_TIMEOUT_MS: "1500",
      HISTORY_ROOMS: "feed:*",
      HISTORY_SIZE: "50",
    },
  });
}, 60_000);
afterAll(async () => {
  admin?.disconnect();
  expect(await server?.stop()).toBe(0);
  await redis?.stop();
});
afterEach(() => closeAllClients());

type Position = { epoch: string; offset: number };
type JoinAck = { ok: boolean; recovered?: boolean; position?: Position };

async function member(userId: string) {
  return connectRegistered(server.publicUrl, await signToken(userId, { rooms: ["*"] }), userId);
}
const join = (s: TestSocket, room: string, since?: Position) =>
  emitAck<JoinAck>(s, "room:join", since ? { room, since } : { room });
const push = async (room: string, i: number): Promise<Position> => {
  const res = await server.api("POST", "/api/push", { room, event: "msg", payload: i });
  expect(res.status).toBe(202);
  return ((await res.json()) as { position: Position }).position;
};
const metaKey = (room: string) => `socket-server:history:{${room}}:meta`;
const meta = (room: string) => admin.hgetall(metaKey(room));

/**
 * The server's history store is served by Redis again (not its fallback): a
 * join of a new room makes the room's key there. (Its connection can be up
 * before it is ready; a push meanwhile would go to the host's sequencer.)
 */
const servedByRedis = (s: TestSocket) =>
  waitFor(
    "the history store to be served by redis",
    async () => {
      const probe = fresh("probe");
      await join(s, probe);
      return (await admin.exists(metaKey(probe))) === 1 ? true : undefined;
    },
    15_000,
  );

/**
 * Redis's AOF directory holds every write so far: no rewrite under way or
 * scheduled. After a full resync (the failover test), Redis 7 starts its AOF
 * anew with a rewrite, and until that is done the writes go to a temporary
 * file that the manifest does not list yet: a copy taken meanwhile would
 * restart Redis without them.
 */
const aofSettled = () =>
  waitFor("the AOF rewrite to be done", async () => {
    const info = await admin.info("persistence");
    const done = ["aof_enabled:1", "aof_rewrite_in_progress:0", "aof_rewrite_scheduled:0"];
    return done.every((f) => info.includes(`${f}\r\n`)) ? true : undefined;
  });

describe("history rooms when Redis rewinds", () => {
  it("a lagging replica takes over (the room's key kept, its last increments lost): a new epoch", async () => {
    const room = fresh("failover");
    const s = await member("rf");
    await join(s, room);
    const replica = await startRedis(["--repl-diskless-sync-delay", "0"]);
    let p4: Position;
    let p5: Position;
    try {
      // The replica's full sync forks the master, which waits for an AOF
      // rewrite's fork to end first.
      await aofSettled();
      await redisCli(replica.port, "REPLICAOF", "127.0.0.1", String(redis.port));
      for (const i of [1, 2, 3]) await push(room, i);
      await waitFor(
        "the replica to have offset 3",
        async () =>
          (await redisCli(replica.port, "HGET", metaKey(room), "seq")).trim() === "3"
            ? true
            : undefined,
        20_000,
      ).catch(async (e: Error) => {
        const info = await redisCli(replica.port, "INFO", "replication").catch(String);
        throw new Error(`${e.message}\nreplica: ${info.replace(/\r?\n/g, " ")}`);
      });
      // The replica is cut off and promoted; the master takes two more pushes it never gets.
      await redisCli(replica.port, "REPLICAOF", "NO", "ONE");
      p4 = await push(room, 4);
      p5 = await push(room, 5);
      expect(p5).toEqual({ epoch: p4.epoch, offset: 5 });
      // The old master rejoins as the new one's replica (its data rewound to
      // the replica's), then takes over again at the same address.
      await redisCli(redis.port, "REPLICAOF", "127.0.0.1", String(replica.port));
      await waitFor("the old master to resync", async () =>
        /master_link_status:up/.test(await redisCli(redis.port, "INFO", "replication"))
          ? true
          : undefined,
      );
      await redisCli(redis.port, "REPLICAOF", "NO", "ONE");
    } finally {
      await replica.stop();
    }
    await admin.connect().catch(() => {});
    // Rewound, not missing: the key is there with the old epoch, at 3.
    expect(await meta(room)).toMatchObject({ epoch: p4.epoch, seq: "3" });

    // A client that saw 3 (not 4 and 5, which are gone) must not be told it recovered.
    const ack3 = await join(s, room, { epoch: p4.epoch, offset: 3 });
    expect(ack3).toMatchObject({ ok: true, recovered: false });
    expect(ack3.position!.epoch).not.toBe(p4.epoch);
    expect(ack3.position!.offset).toBe(0);
    // Offsets are not handed out twice in one epoch: the next push is 1 of the new one.
    expect(await push(room, 6)).toEqual({ epoch: ack3.position!.epoch, offset: 1 });
    expect(await meta(room)).toMatchObject({ epoch: ack3.position!.epoch, seq: "1" });
    expect(await join(s, room, p5)).toMatchObject({ recovered: false });
  });

  it("a restart from an AOF that lacks the last pushes (appendfsync everysec): a new epoch", async () => {
    const room = fresh("restart");
    const s = await member("rr");
    await join(s, room);
    const p1 = await push(room, 1);
    await push(room, 2);
    const dir = (await admin.config("GET", "dir"))[1] as string;
    const aof = joinPath(dir, "appendonlydir");
    const older = `${aof}.older`;
    await aofSettled();
    cpSync(aof, older, { recursive: true }); // fsynced at every write: 2 pushes in it
    await push(room, 3);
    await redis.stop();
    rmSync(aof, { recursive: true });
    cpSync(older, aof, { recursive: true });
    rmSync(older, { recursive: true });
    await redis.restart();
    await servedByRedis(s);
    expect(await meta(room)).toMatchObject({ epoch: p1.epoch, seq: "2" });

    const ack = await join(s, room, { epoch: p1.epoch, offset: 2 });
    expect(ack).toMatchObject({ ok: true, recovered: false });
    expect(ack.position!.epoch).not.toBe(p1.epoch);
    expect(await push(room, 4)).toEqual({ epoch: ack.position!.epoch, offset: 1 });
    expect(await meta(room)).toMatchObject({ epoch: ack.position!.epoch, seq: "1" });
  });

  it("a clean restart keeps the data but not the replication id: clients refetch once", async () => {
    const room = fresh("clean");
    const s = await member("rc");
    await join(s, room);
    const p1 = await push(room, 1);
    await redisCli(redis.port, "SHUTDOWN");
    await redis.restart();
    await servedByRedis(s);
    expect(await meta(room)).toMatchObject({ epoch: p1.epoch, seq: "1" });
    const ack = await join(s, room, p1);
    expect(ack).toMatchObject({ recovered: false, position: { offset: 0 } });
    expect(ack.position!.epoch).not.toBe(p1.epoch);
    expect((await meta(room)).epoch).toBe(ack.position!.epoch);
  });

  it("Redis down: the host's sequencer numbers pushes in an epoch of its own, and recovery is honest", async () => {
    const room = fresh("down");
    const s = await member("rd");
    await join(s, room);
    await servedByRedis(s);
    const before = await push(room, 1);
    expect((await meta(room)).epoch).toBe(before.epoch);
    await redis.stop();
    const during = await push(room, 2);
    expect(during.epoch).not.toBe(before.epoch);
    // The Redis position cannot be recovered from the host's store…
    expect(await join(s, room, before)).toMatchObject({ recovered: false, position: during });
    // …but the host's own can.
    expect(await join(s, room, { ...during, offset: during.offset - 1 })).toMatchObject({
      recovered: true,
      position: during,
    });
    await redis.restart();
    await servedByRedis(s);
    // Back in Redis: a new epoch (this host kept pushes Redis does not have).
    const after = await push(room, 3);
    expect(after.epoch).not.toBe(before.epoch);
    expect(after.epoch).not.toBe(during.epoch);
    expect(after.offset).toBe(1);
    expect((await meta(room)).epoch).toBe(after.epoch);
    expect(await join(s, room, during)).toMatchObject({ recovered: false, position: after });
  });
});
