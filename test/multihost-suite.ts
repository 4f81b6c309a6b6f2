import { waitFor } from "./support/wait.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  closeAllClients,
  connectRegistered,
  nextEvent,
  type TestSocket,
} from "./support/client.js";
import { slotOf } from "./support/delivery-helpers.js";
import { signToken } from "./support/fixtures.js";
import { type RedisServer, startRedis } from "./support/redis.js";
import { type RunningServer, startServer } from "./support/server.js";

/**
 * Two hosts (two real servers, 2 workers each) on one real redis-server:
 * delivery, membership, disconnects and queries across hosts; then Redis is
 * killed (each host keeps serving its own clients, /ready says 503 and why)
 * and started again on the same port (cross-host delivery resumes, nothing
 * twice). Shared by multihost.test.ts (classic) and
 * multihost-sharded.test.ts (sharded pub/sub).
 */

/** Multi-host state takes longer to settle than one host's: 20 s by default. */
export const until = <T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000) =>
  waitFor(what, check, timeoutMs);

export async function readiness(
  s: RunningServer,
): Promise<{ status: number; body: { reasons: string[] } }> {
  const res = await fetch(`${s.apiUrl}/ready`);
  return { status: res.status, body: await res.json() };
}

interface Status {
  workers: { host: string; worker: number; connections: number }[];
  missingHosts?: string[];
}

/** Both hosts ready and each sees the other's workers in /api/status. */
export async function waitForHosts(servers: RunningServer[], workersEach: number) {
  const total = servers.length * workersEach;
  for (const s of servers) {
    await until(`${s.apiUrl} to see ${total} workers`, async () => {
      if ((await readiness(s)).status !== 200) return undefined;
      const st = (await (await s.api("GET", "/api/status")).json()) as Status;
      return st.workers.length === total && !st.missingHosts ? st : undefined;
    });
  }
}

const tokenFor = (u: string) => signToken(u, { rooms: ["*"] });

/** Collects every `event` a socket receives. */
function collect(socket: TestSocket, event: string): unknown[] {
  const got: unknown[] = [];
  socket.on(event, (p: unknown) => got.push(p));
  return got;
}

export function defineMultiHostSuite(mode: "classic" | "sharded"): void {
  let redis: RedisServer;
  let a: RunningServer;
  let b: RunningServer;
  let n = 0;
  const uniq = (s: string) => `${mode}-${s}-${++n}`;

  beforeAll(async () => {
    redis = await startRedis();
    const env = {
      REDIS_URL: redis.url,
      REDIS_ADAPTER_MODE: mode,
      QUERY_TIMEOUT_MS: "1500",
      // The outage test reads the info lines ("reachable again").
      LOG_LEVEL: "info",
      // Other test files may load this 2-core machine; load shedding is not under test.
      MAX_EVENT_LOOP_LAG_MS: "5000",
      MAX_PUSH_LAG_MS: "5000",
    };
    [a, b] = await Promise.all([startServer({ env }), startServer({ env })]);
    await waitForHosts([a, b], 2);
  }, 60_000);
  afterAll(async () => {
    const codes = await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
    expect(codes).toEqual([0, 0]);
  }, 30_000);
  afterEach(() => closeAllClients());

  describe(`across hosts (${mode})`, () => {
    it("a push taken by host A reaches a user connected to host B", async () => {
      const u = uniq("bob");
      const s = await connectRegistered(b.publicUrl, await tokenFor(u), u);
      const got = nextEvent(s, "hello");
      const res = await a.api("POST", "/api/push", {
        userId: u,
        event: "hello",
        payload: { x: 1 },
      });
      expect(res.status).toBe(202);
      expect(await got).toEqual({ x: 1 });
    });

    it("a room push reaches members on both hosts, once each", async () => {
      const room = uniq("room");
      const [ua, ub] = [uniq("ann"), uniq("ben")];
      const sa = await connectRegistered(a.publicUrl, await tokenFor(ua), ua);
      const sb = await connectRegistered(b.publicUrl, await tokenFor(ub), ub);
      // Both placed through host A's API: ben's socket is on host B.
      for (const u of [ua, ub]) {
        const r = await a.api("PUT", `/api/rooms/${room}/members/${u}`);
        expect(r.status).toBe(200);
        expect(await r.json()).toMatchObject({ sockets: 1 });
      }
      const [ga, gb] = [collect(sa, "news"), collect(sb, "news")];
      const res = await b.api("POST", "/api/push", { room, event: "news", payload: "hi" });
      expect(res.status).toBe(202);
      // A later push to each user on its own arrives after any duplicate would have.
      const ends = [nextEvent(sa, "end"), nextEvent(sb, "end")];
      await b.api("POST", "/api/push", { userIds: [ua, ub], event: "end", payload: 1 });
      await Promise.all(ends);
      expect(ga).toEqual(["hi"]);
      expect(gb).toEqual(["hi"]);
    });

    it("a push with ackTimeoutMs counts sockets and acks on both hosts", async () => {
      const u = uniq("ack");
      const token = await tokenFor(u);
      const sockets = [
        await connectRegistered(a.publicUrl, token, u),
        await connectRegistered(b.publicUrl, token, u),
      ];
      for (const s of sockets) s.on("ask", (_p: unknown, ack: (v: string) => void) => ack("ok"));
      const res = await a.api("POST", "/api/push", {
        userId: u,
        event: "ask",
        payload: 1,
        options: { ackTimeoutMs: 5_000 },
      });
      expect(res.status).toBe(202);
      expect(await res.json()).toMatchObject({ delivered: 2, acked: 2 });
    });

    it("membership changes through the API apply to sockets on the other host", async () => {
      const room = uniq("club");
      const u = uniq("cat");
      const s = await connectRegistered(b.publicUrl, await tokenFor(u), u);
      const put = await a.api("PUT", `/api/rooms/${room}/members/${u}`);
      expect(await put.json()).toMatchObject({ room, userId: u, sockets: 1 });
      const onB = await (await b.api("GET", `/api/rooms/${room}`)).json();
      expect(onB).toMatchObject({ room, sockets: 1, members: [{ userId: u, sockets: 1 }] });
      const got = nextEvent(s, "in-room");
      await a.api("POST", "/api/push", { room, event: "in-room", payload: 7 });
      expect(await got).toBe(7);

      const del = await a.api("DELETE", `/api/rooms/${room}/members/${u}`);
      expect(await del.json()).toMatchObject({ sockets: 1 });
      expect((await a.api("GET", `/api/rooms/${room}`)).status).toBe(404);
      expect((await b.api("GET", `/api/users/${u}`)).ok).toBe(true);
      const user = await (await a.api("GET", `/api/users/${u}`)).json();
      expect(user.rooms).not.toContain(room);
    });

    it("disconnecting a user through one host closes the user's sockets on both", async () => {
      const u = uniq("dan");
      const token = await tokenFor(u);
      const sa = await connectRegistered(a.publicUrl, token, u);
      const sb = await connectRegistered(b.publicUrl, token, u);
      const gone = [sa, sb].map((s) => new Promise((r) => s.once("disconnect", r)));
      const res = await a.api("POST", `/api/users/${u}/disconnect`);
      expect(await res.json()).toEqual({ userId: u, disconnected: 2 });
      await Promise.all(gone);
      const after = await (await b.api("GET", `/api/users/${u}`)).json();
      expect(after).toMatchObject({ online: false, sockets: 0 });
    });

    it("user, room and status queries answer for every host", async () => {
      const u = uniq("eve");
      const room = uniq("lobby");
      const token = await tokenFor(u);
      const sa = await connectRegistered(a.publicUrl, token, u);
      await connectRegistered(b.publicUrl, token, u);
      const joined = await (await a.api("PUT", `/api/rooms/${room}/members/${u}`)).json();
      expect(joined.sockets).toBe(2);
      expect(sa.connected).toBe(true);

      const user = await (await b.api("GET", `/api/users/${u}`)).json();
      expect(user).toEqual({
        userId: u,
        online: true,
        sockets: 2,
        rooms: [room, `user:${u}`].sort(),
      });
      const rooms = await (await a.api("GET", `/api/rooms?prefix=${mode}-lobby`)).json();
      expect(rooms.rooms).toContainEqual({ room, sockets: 2, users: 1 });
      const one = await (await b.api("GET", `/api/rooms/${room}`)).json();
      expect(one).toMatchObject({ sockets: 2, members: [{ userId: u, sockets: 2 }] });

      const status = (await (await a.api("GET", "/api/status")).json()) as Status;
      expect(status.workers).toHaveLength(4);
      expect(new Set(status.workers.map((w) => w.host)).size).toBe(2);
      expect(status.missingHosts).toBeUndefined();
    });
  });

  describe(`Redis outage and recovery (${mode})`, () => {
    it("keeps each host serving its own clients, says 503 with the reason, and recovers", async () => {
      const local = uniq("fay");
      const remote = uniq("gus");
      const token = await tokenFor(local);
      // Sockets on host A until its two workers hold some (the kernel picks
      // the worker by address and port); every one gets the local push.
      const onA = [await connectRegistered(a.publicUrl, token, local)];
      const workersOfA = () => new Set(onA.map(slotOf)).size;
      while (onA.length < 12 && (onA.length < 2 || workersOfA() < 2)) {
        onA.push(await connectRegistered(a.publicUrl, token, local));
      }
      const sr = await connectRegistered(b.publicUrl, await tokenFor(remote), remote);
      expect(workersOfA()).toBe(2);

      await redis.stop();
      for (const s of [a, b]) {
        const r = await until("/ready to say 503", async () => {
          const r = await readiness(s);
          return r.status === 503 ? r : undefined;
        }).catch((e) => {
          throw new Error(`${e.message}\n${s.output().slice(-4000)}`);
        });
        expect(r.body.reasons).toContain("redis unreachable");
      }

      // Local delivery on host A, through whichever worker takes the push.
      for (let i = 0; i < 4; i++) {
        const got = onA.map((s) => nextEvent(s, "local"));
        const res = await a.api("POST", "/api/push", { userId: local, event: "local", payload: i });
        expect(res.status).toBe(202);
        expect(await Promise.all(got)).toEqual(onA.map(() => i));
      }
      // Cross-host pushes are accepted (and lost) while Redis is down.
      const lost = collect(sr, "lost");
      expect(
        (await a.api("POST", "/api/push", { userId: remote, event: "lost", payload: 0 })).status,
      ).toBe(202);
      // Queries answer in bounded time for this host and name the other one.
      const t0 = Date.now();
      const q = await (await a.api("GET", `/api/users/${local}`)).json();
      expect(Date.now() - t0).toBeLessThan(1_500);
      expect(q).toMatchObject({ online: true, sockets: onA.length });
      expect(q.missingHosts).toHaveLength(1);

      // Once per worker and outage, not once per message or retry.
      const downLines =
        a.output().match(/"module":"redis"[^\n]*redis unreachable: cross-host/g) ?? [];
      expect(downLines).toHaveLength(2);

      await redis.restart();
      for (const s of [a, b]) {
        await until("/ready to say 200 again", async () =>
          (await readiness(s)).status === 200 ? true : undefined,
        );
      }
      await waitForHosts([a, b], 2);

      // Cross-host delivery resumed, in order, nothing twice, nothing late.
      const got = collect(sr, "back");
      const end = nextEvent(sr, "end");
      for (let i = 0; i < 5; i++) {
        const r = await a.api("POST", "/api/push", { userId: remote, event: "back", payload: i });
        expect(r.status).toBe(202);
      }
      await a.api("POST", "/api/push", { userId: remote, event: "end", payload: 1 });
      await end;
      expect(got).toEqual([0, 1, 2, 3, 4]);
      expect(lost).toEqual([]);
      expect(a.output().match(/"module":"redis"[^\n]*redis reachable again/g) ?? []).toHaveLength(
        2,
      );
      expect(b.output().match(/"module":"redis"[^\n]*redis reachable again/g) ?? []).toHaveLength(
        2,
      );
    }, 60_000);
  });

  describe(`a host leaving (${mode})`, () => {
    it("is dropped from the other hosts' queries as soon as it shuts down", async () => {
      expect(await b.stop()).toBe(0);
      const t0 = Date.now();
      const st = (await (await a.api("GET", "/api/status")).json()) as Status;
      expect(Date.now() - t0).toBeLessThan(1_000);
      expect(st.missingHosts).toBeUndefined();
      expect(st.workers).toHaveLength(2);
    });
  });
}
