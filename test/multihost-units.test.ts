import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/shared/config.js";
import { frame, hasBinary, orderedPublisher, unframe } from "../src/worker/redis/hosts-adapter.js";
import type { Cluster } from "ioredis";
import { describeRedisTarget } from "../src/shared/redis-target.js";
import {
  classicSubscriber,
  clusterHealth,
  shardedGroup,
} from "../src/worker/redis/cluster-health.js";
import { createRedisClient, isCluster } from "../src/worker/redis/redis-clients.js";
import { describeRedisUrl, retryDelayMs } from "../src/worker/redis/redis-link.js";
import { TEST_API_KEY, TEST_DASHBOARD_TOKEN, TEST_JWT_SECRET } from "./support/fixtures.js";

/** The pure parts of multi-host mode: the wire frame, URL handling, backoff. */

describe("frame between hosts", () => {
  it("carries host, room and a JSON message", () => {
    const msg = { type: 3, uid: "u1", nsp: "/", data: { packet: { data: ["ev", { a: "é✓" }] } } };
    const raw = frame("host-a:12", "user:bob", msg);
    expect(typeof raw).toBe("string");
    const f = unframe(Buffer.from(raw));
    expect(f).toMatchObject({ host: "host-a:12", room: "user:bob" });
    expect(f!.body()).toEqual(msg);
  });

  it("uses msgpack for binary payloads and keeps the bytes", () => {
    const bytes = Buffer.from([0, 1, 2, 255, 10, 13]);
    const msg = { type: 3, uid: "u1", nsp: "/", data: { packet: { data: ["bin", bytes] } } };
    expect(hasBinary(msg)).toBe(true);
    const raw = frame("h", "", msg);
    expect(Buffer.isBuffer(raw)).toBe(true);
    const body = unframe(raw as Buffer)!.body() as typeof msg;
    expect(Buffer.from(body.data.packet.data[1] as Uint8Array)).toEqual(bytes);
  });

  it("survives a room with quotes and newlines, and rejects garbage", () => {
    const raw = frame('h"x', 'odd\n"room"', { type: 2 });
    expect(unframe(Buffer.from(raw))).toMatchObject({ host: 'h"x', room: 'odd\n"room"' });
    expect(unframe(Buffer.from("no header line"))).toBeUndefined();
    expect(unframe(Buffer.from('{"not":"an array"}\n{}'))).toBeUndefined();
    expect(unframe(Buffer.from('["h",""]\n{broken'))!.body()).toBeUndefined();
  });
});

describe("publishing between hosts", () => {
  // The Redis client stands in as a list of pending sends, so that one send
  // can be held (as ioredis holds a command through a failover's retries).
  function harness() {
    const sends: { channel: string; payload: string; settle: (ok: boolean) => void }[] = [];
    let up = true;
    let dropped = 0;
    const publish = orderedPublisher({
      up: () => up,
      send: (channel, payload) =>
        new Promise((resolve, reject) =>
          sends.push({
            channel,
            payload: String(payload),
            settle: (ok) => (ok ? resolve(1) : reject(new Error("CLUSTERDOWN"))),
          }),
        ),
      dropped: () => dropped++,
    });
    const tick = () => new Promise((r) => setImmediate(r));
    return { publish, sends, tick, setUp: (u: boolean) => (up = u), dropped: () => dropped };
  }

  it("sends nothing on a channel past a message still in flight, then the rest in order", async () => {
    const h = harness();
    h.publish("c", "0");
    h.publish("c", "1");
    h.publish("other", "x"); // another channel is not held up
    h.publish("c", "2");
    expect(h.sends.map((s) => s.payload)).toEqual(["0", "x"]);
    h.sends[0]!.settle(true);
    await h.tick();
    expect(h.sends.map((s) => s.payload)).toEqual(["0", "x", "1", "2"]);
    h.publish("c", "3"); // the batch 1,2 is in flight
    await h.tick();
    expect(h.sends).toHaveLength(4);
    h.sends[2]!.settle(true);
    await h.tick();
    expect(h.sends).toHaveLength(4); // until all of the batch settles
    h.sends[3]!.settle(true);
    await h.tick();
    expect(h.sends.map((s) => s.payload)).toEqual(["0", "x", "1", "2", "3"]);
  });

  it("a message given up counts as dropped and does not hold the channel", async () => {
    const h = harness();
    h.publish("c", "0");
    h.publish("c", "1");
    h.sends[0]!.settle(false);
    await h.tick();
    expect(h.dropped()).toBe(1);
    expect(h.sends.map((s) => s.payload)).toEqual(["0", "1"]);
  });

  it("while Redis is down, what waits is dropped rather than sent later", async () => {
    const h = harness();
    h.publish("c", "0");
    h.publish("c", "1");
    h.setUp(false);
    h.publish("c", "2");
    h.sends[0]!.settle(true);
    await h.tick();
    expect(h.sends).toHaveLength(1);
    expect(h.dropped()).toBe(2);
    h.setUp(true);
    h.publish("c", "3");
    expect(h.sends.map((s) => s.payload)).toEqual(["0", "3"]);
  });
});

describe("REDIS_URL", () => {
  const base = {
    JWT_SECRET: TEST_JWT_SECRET,
    API_KEYS: TEST_API_KEY,
    DASHBOARD_TOKEN: TEST_DASHBOARD_TOKEN,
  };
  it.each([
    "redis://127.0.0.1:6379",
    "redis://:pw@redis.internal:6380/2",
    "rediss://user:pw@redis.example.com",
    "redis://redis?family=6",
  ])("accepts %s", (url) => {
    expect(loadConfig({ ...base, REDIS_URL: url }).REDIS_URL).toBe(url);
  });
  it.each([
    "redis://:only-a-password@",
    "redis://host:99999",
    "redis://host/not-a-db",
    "http://host:6379",
  ])("refuses %s without printing it", (url) => {
    let message = "";
    try {
      loadConfig({ ...base, REDIS_URL: url });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain("REDIS_URL: got a secret value (not shown)");
    expect(message).not.toContain(url);
  });

  it("is described for logs without the password", () => {
    const d = describeRedisUrl("rediss://alice:s3cret-pw@redis.example.com:6380/3");
    expect(d).toEqual({ host: "redis.example.com", port: "6380", tls: true, auth: true, db: "3" });
    expect(JSON.stringify(d)).not.toContain("s3cret");
  });
});

describe("reconnect backoff", () => {
  it("doubles from 100 ms to a 5 s cap, with up to 250 ms of jitter", () => {
    for (const [attempt, base] of [
      [1, 100],
      [2, 200],
      [4, 800],
      [7, 5_000],
      [50, 5_000],
    ] as const) {
      const d = retryDelayMs(attempt);
      expect(d).toBeGreaterThanOrEqual(base);
      expect(d).toBeLessThan(base + 250);
    }
  });
});

describe("Redis Cluster and Sentinel clients", () => {
  it("are described for logs without the password", () => {
    const auth = { username: "socket", password: "s3cret-pw", tls: true };
    const c = describeRedisTarget({
      kind: "cluster",
      nodes: [{ host: "10.0.0.1", port: 7000 }],
      auth,
    });
    expect(c).toEqual({ cluster: "10.0.0.1:7000", tls: true, auth: true });
    const s = describeRedisTarget({
      kind: "sentinel",
      sentinels: [{ host: "s1", port: 26379 }],
      master: "main",
      auth,
    });
    expect(s).toEqual({ sentinels: "s1:26379", master: "main", tls: true, auth: true });
    expect(JSON.stringify([c, s])).not.toContain("s3cret");
  });

  // cluster-health.ts reads ioredis' subscriber internals to tell when a
  // failover is over; an ioredis upgrade that changes them must fail here,
  // not silently skip the check.
  it("a cluster client exposes the subscriber state the health check reads", async () => {
    const client = createRedisClient(
      { kind: "cluster", nodes: [{ host: "127.0.0.1", port: 1 }], auth: { tls: false } },
      { connectionName: "units", lazyConnect: true, shardedSubscribers: true },
    );
    try {
      expect(isCluster(client)).toBe(true);
      const cluster = client as Cluster;
      expect(shardedGroup(cluster)).toBeDefined();
      expect(classicSubscriber(cluster)).toBeDefined();
      expect(await clusterHealth(cluster, 100)).toBe("cluster connection wait");
    } finally {
      client.disconnect();
    }
  });
});
