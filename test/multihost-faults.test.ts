import { execFileSync } from "node:child_process";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { readiness, until, waitForHosts } from "./multihost-suite.js";
import { closeAllClients, connectRegistered, nextEvent } from "./support/client.js";
import { signToken } from "./support/fixtures.js";
import { type RedisServer, startRedis } from "./support/redis.js";
import { type RunningServer, startServer } from "./support/server.js";

/**
 * A Redis that hangs instead of dying (SIGSTOP: connections stay open, no
 * answer, as in a network partition): the hosts notice within seconds
 * (pending commands without a reply), keep serving their own clients, say
 * 503, and recover when Redis answers again.
 */

let redis: RedisServer;
let a: RunningServer;
let b: RunningServer;
let redisPid = 0;
let stopped = false;

beforeAll(async () => {
  redis = await startRedis();
  const info = execFileSync("redis-cli", ["-p", String(redis.port), "info", "server"]).toString();
  redisPid = Number(/process_id:(\d+)/.exec(info)?.[1]);
  const env = {
    REDIS_URL: redis.url,
    LOG_LEVEL: "info",
    MAX_EVENT_LOOP_LAG_MS: "5000",
    MAX_PUSH_LAG_MS: "5000",
    QUERY_TIMEOUT_MS: "1500",
  };
  [a, b] = await Promise.all([startServer({ env }), startServer({ env })]);
  await waitForHosts([a, b], 2);
}, 60_000);
afterAll(async () => {
  if (stopped) process.kill(redisPid, "SIGCONT");
  const codes = await Promise.all([a?.stop(), b?.stop()]);
  await redis?.stop();
  expect(codes).toEqual([0, 0]);
}, 30_000);
afterEach(() => closeAllClients());

describe("a hung Redis", () => {
  it("is noticed, local delivery goes on, and cross-host delivery resumes", async () => {
    const token = await signToken("hung-local");
    const local = [
      await connectRegistered(a.publicUrl, token, "hung-local"),
      await connectRegistered(a.publicUrl, token, "hung-local"),
    ];
    const remote = await connectRegistered(
      b.publicUrl,
      await signToken("hung-remote"),
      "hung-remote",
    );
    const seen: number[] = [];
    remote.on("seq", (n: number) => seen.push(n));

    process.kill(redisPid, "SIGSTOP");
    stopped = true;
    // Pushes while hung: same-host delivery is never held up by Redis.
    for (let i = 0; i < 3; i++) {
      const got = local.map((s) => nextEvent(s, "local"));
      expect(
        (await a.api("POST", "/api/push", { userId: "hung-local", event: "local", payload: i }))
          .status,
      ).toBe(202);
      expect(await Promise.all(got)).toEqual([i, i]);
    }
    for (const s of [a, b]) {
      const r = await until(
        "/ready 503 while Redis hangs",
        async () => {
          const r = await readiness(s);
          return r.status === 503 ? r : undefined;
        },
        20_000,
      );
      expect(r.body.reasons).toContain("redis unreachable");
    }

    process.kill(redisPid, "SIGCONT");
    stopped = false;
    for (const s of [a, b]) {
      await until("/ready 200 again", async () =>
        (await readiness(s)).status === 200 ? true : undefined,
      );
    }
    await waitForHosts([a, b], 2);
    const end = nextEvent(remote, "end");
    for (let i = 100; i < 105; i++) {
      await a.api("POST", "/api/push", { userId: "hung-remote", event: "seq", payload: i });
    }
    await a.api("POST", "/api/push", { userId: "hung-remote", event: "end", payload: 1 });
    await end;
    expect(seen.filter((n) => n >= 100)).toEqual([100, 101, 102, 103, 104]);
  }, 60_000);
});
