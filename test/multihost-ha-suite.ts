import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { readiness, until, waitForHosts } from "./multihost-suite.js";
import { closeAllClients, connect, connectRegistered, nextEvent } from "./support/client.js";
import { connectAndRegister, slotOf, waitForCount } from "./support/delivery-helpers.js";
import { signToken } from "./support/fixtures.js";
import { deliveryBucket, deliveryKeyBase } from "../src/worker/push/redis-store.js";
import { redisCli } from "./support/redis-ha.js";
import { type RunningServer, startServer } from "./support/server.js";

/**
 * Two hosts on a Redis tier that fails over (Redis Cluster or Sentinel):
 * cross-host delivery, queries, the offline store and revocations work
 * through it; then the master that serves a test user (and the offline
 * store) is killed with SIGKILL: each host keeps delivering to its own
 * clients, /ready says 503 and why, cross-host pushes flow again by
 * themselves within 15 s, /ready returns to 200, and a message a replica
 * had acknowledged before the kill is still replayed.
 */

export interface HaTier {
  /** Environment that points the hosts at the tier. */
  env: Record<string, string>;
  /** The port of the master serving `key` (a key or a sharded channel name). */
  masterOf(key: string): Promise<number>;
  kill(port: number): void;
  /** A planned failover of `key`'s master; resolves with the new master's port. */
  switchover(key: string): Promise<number>;
  /** Cluster only: moves the slot of `key` to another master (a resharding). */
  moveSlotOf?(key: string): Promise<{ from: number; to: number }>;
  stop(): Promise<void>;
}

const PREFIX = "ssha";
const userChannel = (u: string) => `${PREFIX}:sio#/#user:${u}#`;
const storeKey = (kind: string, u: string) =>
  `${deliveryKeyBase(PREFIX, kind === "cluster", deliveryBucket(u))}:q:${u}`;

/** Until the master's replica has acknowledged every write so far (INFO replication offsets). */
async function waitReplicated(masterPort: number): Promise<void> {
  await until("the replica to acknowledge the master's writes", async () => {
    const info = await redisCli(masterPort, "info", "replication");
    const master = Number(/master_repl_offset:(\d+)/.exec(info)?.[1]);
    const replica = Number(/slave0:[^\n]*offset=(\d+)/.exec(info)?.[1]);
    return replica >= master ? true : undefined;
  });
}

export function defineHaSuite(kind: "cluster" | "sentinel", start: () => Promise<HaTier>): void {
  let tier: HaTier;
  let a: RunningServer;
  let b: RunningServer;
  let n = 0;
  const uniq = (s: string) => `${kind}-${s}-${++n}`;
  const tokenFor = (u: string) => signToken(u, { rooms: ["*"] });

  beforeAll(async () => {
    tier = await start();
    const env = {
      ...tier.env,
      REDIS_KEY_PREFIX: PREFIX,
      // The room query counts every worker of both hosts: under a full test
      // run's load one took longer than 1.5 s to answer.
      QUERY_TIMEOUT_MS: "5000",
      LOG_LEVEL: "info",
    };
    [a, b] = await Promise.all([startServer({ env }), startServer({ env })]);
    await waitForHosts([a, b], 2);
  }, 60_000);
  afterAll(async () => {
    const codes = await Promise.all([a?.stop(), b?.stop()]);
    await tier?.stop();
    expect(codes).toEqual([0, 0]);
  }, 30_000);
  afterEach(() => closeAllClients());

  describe(`two hosts on Redis ${kind}`, () => {
    it("a user push and a room push cross hosts; a room query sees both", async () => {
      const u = uniq("bob");
      const sb = await connectRegistered(b.publicUrl, await tokenFor(u), u);
      const got = nextEvent(sb, "hello");
      expect(
        (await a.api("POST", "/api/push", { userId: u, event: "hello", payload: 1 })).status,
      ).toBe(202);
      expect(await got).toBe(1);

      const room = uniq("room");
      const v = uniq("ann");
      const sa = await connectRegistered(a.publicUrl, await tokenFor(v), v);
      for (const m of [u, v]) {
        expect(await (await b.api("PUT", `/api/rooms/${room}/members/${m}`)).json()).toMatchObject({
          sockets: 1,
        });
      }
      const q = await (await a.api("GET", `/api/rooms/${room}`)).json();
      expect(q).toMatchObject({ room, sockets: 2 });
      expect(q.missingHosts).toBeUndefined();
      expect(q.members.map((m: { userId: string }) => m.userId).sort()).toEqual([v, u].sort());

      const news = [nextEvent(sa, "news"), nextEvent(sb, "news")];
      expect(
        (await b.api("POST", "/api/push", { room, event: "news", payload: "hi" })).status,
      ).toBe(202);
      expect(await Promise.all(news)).toEqual(["hi", "hi"]);
    });

    it("stores a message on host A for offline users and replays it on register on host B", async () => {
      // Two users in different buckets of the store (on a cluster: two hash tags).
      const u = uniq("off");
      let v = uniq("off");
      while (deliveryBucket(v) === deliveryBucket(u)) v = uniq("off");
      const res = await a.api("POST", "/api/push", {
        userIds: [u, v],
        event: "note",
        payload: { text: "kept" },
        options: { offline: "store" },
      });
      expect(await res.json()).toMatchObject({ stored: 2 });
      // In Redis, under the key layout the docs give, on the master of its slot.
      for (const user of [u, v]) {
        const key = storeKey(kind, user);
        expect((await redisCli(await tier.masterOf(key), "llen", key)).trim()).toBe("1");
      }
      for (const user of [u, v]) {
        const r = await connectAndRegister(b.publicUrl, await tokenFor(user), user, "note");
        expect(r.ack).toMatchObject({ ok: true, replayed: 1 });
        await waitForCount(r.socket, "note", () => r.got.length, 1);
        expect(r.got).toEqual([{ text: "kept" }]);
      }
    });

    it("a revocation on host A is seen on host B", async () => {
      const u = uniq("rev");
      const jti = `${u}-jti`;
      const token = await signToken(u, { jti });
      const onB = await connect(b.publicUrl, token);
      const told = nextEvent<{ code: string }>(onB, "server:disconnect");
      const res = await a.api("POST", "/api/tokens/revoke", {
        jti,
        expiresAt: Math.floor(Date.now() / 1000) + 600,
      });
      expect(await res.json()).toMatchObject({ disconnected: 1, sharedWithOtherHosts: true });
      expect((await told).code).toBe("AUTH_REVOKED");
      for (const host of [a, b]) {
        const err = await connect(host.publicUrl, token).then(
          () => undefined,
          (e: { data?: { code?: string } }) => e,
        );
        expect(err?.data?.code).toBe("AUTH_REVOKED");
      }
    });
  });

  describe.skipIf(kind !== "cluster")(`a slot moving to another master (${kind})`, () => {
    it("pushes to a user whose channel's slot moved keep crossing hosts", async () => {
      const u = uniq("moved");
      const remote = await connectRegistered(b.publicUrl, await tokenFor(u), u);
      const seen: number[] = [];
      remote.on("seq", (i: number) => seen.push(i));
      const before = nextEvent(remote, "seq");
      await a.api("POST", "/api/push", { userId: u, event: "seq", payload: -1 });
      await before;

      const moved = await tier.moveSlotOf!(userChannel(u));
      expect(await tier.masterOf(userChannel(u))).toBe(moved.to);
      // ioredis learns the new owner (MOVED, its slot refresh) and re-subscribes there.
      const t0 = Date.now();
      let i = 0;
      while (!seen.some((n) => n >= 0) && Date.now() - t0 < 15_000) {
        await a.api("POST", "/api/push", { userId: u, event: "seq", payload: i++ });
        await new Promise((r) => setTimeout(r, 200));
      }
      console.log(`slot move: cross-host push after ${Date.now() - t0} ms`);
      expect(seen.some((n) => n >= 0)).toBe(true);
      expect(Date.now() - t0).toBeLessThan(10_000);
      // And a push just after arrives at once, once.
      const got = nextEvent(remote, "after");
      await a.api("POST", "/api/push", { userId: u, event: "after", payload: 1 });
      expect(await got).toBe(1);
    });
  });

  describe(`a planned switchover (${kind})`, () => {
    it("hosts follow the new master by themselves: cross-host pushes go on", async () => {
      const u = uniq("sw");
      const remote = await connectRegistered(b.publicUrl, await tokenFor(u), u);
      const seen: number[] = [];
      remote.on("seq", (i: number) => seen.push(i));
      const from = await tier.masterOf(userChannel(u));
      const to = await tier.switchover(userChannel(u));
      expect(to).not.toBe(from);
      const t0 = Date.now();
      let i = 0;
      while (seen.length === 0 && Date.now() - t0 < 15_000) {
        await a.api("POST", "/api/push", { userId: u, event: "seq", payload: i++ });
        await new Promise((r) => setTimeout(r, 200));
      }
      console.log(
        `${kind} switchover: cross-host push ${Date.now() - t0} ms after the new master took over`,
      );
      expect(seen.length).toBeGreaterThan(0);
      for (const s of [a, b]) {
        await until("/ready 200 after the switchover", async () =>
          (await readiness(s)).status === 200 ? true : undefined,
        );
      }
      // Writes go to the new master too: an offline message stored and replayed.
      const off = uniq("sw-off");
      const res = await a.api("POST", "/api/push", {
        userId: off,
        event: "note",
        payload: "after",
        options: { offline: "store" },
      });
      expect(await res.json()).toMatchObject({ stored: 1 });
      const r = await connectAndRegister(b.publicUrl, await tokenFor(off), off, "note");
      expect(r.ack).toMatchObject({ ok: true, replayed: 1 });
    }, 40_000);
  });

  describe(`a Redis ${kind} failover`, () => {
    it("kill -9 of the user's master: local delivery goes on, /ready says why, cross-host pushes resume within 15 s", async () => {
      // A user whose channel lives on the master that also holds an offline user's queue.
      const off = uniq("kept");
      const storeMaster = await tier.masterOf(storeKey(kind, off));
      let u = uniq("fo");
      while ((await tier.masterOf(userChannel(u))) !== storeMaster) u = uniq("fo");
      const remote = await connectRegistered(b.publicUrl, await tokenFor(u), u);
      const seen: number[] = [];
      remote.on("seq", (i: number) => seen.push(i));
      // Sockets of a local user on both of host A's workers (the kernel picks
      // the worker): a push A takes reaches the other worker over IPC.
      const local = uniq("here");
      const localToken = await tokenFor(local);
      const onA = [await connectRegistered(a.publicUrl, localToken, local)];
      const workersOfA = () => new Set(onA.map(slotOf)).size;
      while (onA.length < 12 && workersOfA() < 2) {
        onA.push(await connectRegistered(a.publicUrl, localToken, local));
      }
      expect(workersOfA()).toBe(2);
      // Stored before the kill and acknowledged by the replica: must survive it.
      const stored = await a.api("POST", "/api/push", {
        userId: off,
        event: "note",
        payload: "before",
        options: { offline: "store" },
      });
      expect(await stored.json()).toMatchObject({ stored: 1 });
      await waitReplicated(storeMaster);

      const t0 = Date.now();
      tier.kill(storeMaster);

      // /ready on both hosts, watched from the kill on.
      const reasons = new Set<string>();
      let watching = true;
      const watch = (async () => {
        while (watching) {
          for (const s of [a, b]) {
            const r = await readiness(s).catch(() => undefined);
            if (r?.status === 503) for (const x of r.body.reasons) reasons.add(x);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      })();

      // Same-host delivery is never held up by the failover.
      await until("host A to notice the lost master", async () =>
        (await readiness(a)).status === 503 ? true : undefined,
      );
      for (let i = 0; i < 3; i++) {
        const got = onA.map((s) => nextEvent(s, "local"));
        expect(
          (await a.api("POST", "/api/push", { userId: local, event: "local", payload: i })).status,
        ).toBe(202);
        expect(await Promise.all(got)).toEqual(onA.map(() => i));
      }

      // Cross-host: push every 200 ms until one arrives.
      let i = 0;
      let firstAt = 0;
      while (seen.length === 0 && Date.now() - t0 < 20_000) {
        const r = await a.api("POST", "/api/push", { userId: u, event: "seq", payload: i++ });
        expect(r.status).toBe(202);
        await new Promise((r) => setTimeout(r, 200));
      }
      firstAt = Date.now();
      const crossHostMs = firstAt - t0;
      for (const s of [a, b]) {
        await until(
          "/ready 200 after the failover",
          async () => ((await readiness(s)).status === 200 ? true : undefined),
          20_000,
        ).catch(async (e: Error) => {
          const r = await readiness(s);
          throw new Error(`${e.message}: ${JSON.stringify(r)}\n${s.output().slice(-6000)}`);
        });
      }
      const readyMs = Date.now() - t0;
      watching = false;
      await watch;
      console.log(
        `${kind} failover: cross-host push after ${crossHostMs} ms, /ready 200 after ${readyMs} ms, /ready said ${JSON.stringify([...reasons])}`,
      );
      expect(seen.length).toBeGreaterThan(0);
      expect(crossHostMs).toBeLessThan(15_000);
      expect(readyMs).toBeLessThan(20_000);
      expect(reasons).toContain("redis unreachable");
      expect([...reasons].some((r) => r.startsWith("redis: "))).toBe(true);

      // Nothing twice, in order from the first delivered.
      const end = nextEvent(remote, "end");
      await a.api("POST", "/api/push", { userId: u, event: "end", payload: 1 });
      await end;
      expect(seen).toEqual([...seen].sort((x, y) => x - y));
      expect(new Set(seen).size).toBe(seen.length);

      // What the replica had acknowledged is still there.
      const r = await connectAndRegister(b.publicUrl, await tokenFor(off), off, "note");
      expect(r.ack).toMatchObject({ ok: true, replayed: 1 });
      await waitForCount(r.socket, "note", () => r.got.length, 1);
      expect(r.got).toEqual(["before"]);
      await waitForHosts([a, b], 2);
    }, 60_000);
  });
}
