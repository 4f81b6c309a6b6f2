import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { readiness, until, waitForHosts } from "./multihost-suite.js";
import { closeAllClients, connectRegistered, nextEvent } from "./support/client.js";
import { signToken } from "./support/fixtures.js";
import { hasCommand } from "./support/processes.js";
import { freePort, startRedis } from "./support/redis.js";
import { type RunningServer, startServer } from "./support/server.js";

/**
 * REDIS_URL is passed to ioredis as it is: a password, an ACL user and TLS
 * (`rediss://`) work; a Redis that refuses the password starts the host
 * degraded (serving its own clients, /ready 503); a malformed URL stops the
 * start. No password is ever printed.
 */

// TEST FIXTURES ONLY.
const PASSWORD = "test-only-redis-password-7f3a";
const ACL_PASSWORD = "test-only-acl-password-91c2";

const started: RunningServer[] = [];
async function host(env: Record<string, string>, workers = 1): Promise<RunningServer> {
  const s = await startServer({
    workers,
    env: { LOG_LEVEL: "info", MAX_EVENT_LOOP_LAG_MS: "5000", MAX_PUSH_LAG_MS: "5000", ...env },
  });
  started.push(s);
  return s;
}
let exitCodes: (number | string | null)[] = [];
async function stopHosts(): Promise<void> {
  exitCodes = await Promise.all(started.splice(0).map((s) => s.stop()));
}
afterEach(() => {
  closeAllClients();
  expect(exitCodes.filter((c) => c !== 0)).toEqual([]);
  exitCodes = [];
});

async function crossHostPush(from: RunningServer, to: RunningServer, user: string) {
  const s = await connectRegistered(to.publicUrl, await signToken(user), user);
  const got = nextEvent(s, "tick");
  expect(
    (await from.api("POST", "/api/push", { userId: user, event: "tick", payload: 1 })).status,
  ).toBe(202);
  expect(await got).toBe(1);
}

describe("Redis authentication and TLS", () => {
  it("a password and an ACL user in the URL work, and neither is printed", async () => {
    const redis = await startRedis([
      "--requirepass",
      PASSWORD,
      // An ACL user limited to socket-server's keys and channels, as
      // docs/scaling.md suggests (redis-server takes the rule's words as
      // separate arguments).
      "--user",
      "hostb",
      "on",
      `>${ACL_PASSWORD}`,
      "~socket-server:*",
      "&socket-server:*",
      "+@all",
      "-@dangerous",
      "+info",
    ]);
    try {
      const [a, b] = await Promise.all([
        host({ REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:${redis.port}` }),
        host({ REDIS_URL: `redis://hostb:${ACL_PASSWORD}@127.0.0.1:${redis.port}/0` }),
      ]);
      await waitForHosts([a, b], 1);
      await crossHostPush(a, b, "auth-u1");
      await crossHostPush(b, a, "auth-u2");
      for (const s of [a, b]) {
        expect(s.output()).toContain('"auth":true');
        expect(s.output()).not.toContain(PASSWORD);
        expect(s.output()).not.toContain(ACL_PASSWORD);
      }
    } finally {
      closeAllClients();
      await stopHosts();
      await redis.stop();
    }
  });

  it("a refused password starts the host degraded: own clients served, /ready 503, logged once", async () => {
    const redis = await startRedis(["--requirepass", PASSWORD]);
    try {
      const wrong = "test-only-not-the-password-55e1";
      const a = await host({ REDIS_URL: `redis://:${wrong}@127.0.0.1:${redis.port}` }, 2);
      const r = await until("/ready 503", async () => {
        const r = await readiness(a);
        return r.status === 503 ? r : undefined;
      });
      expect(r.body.reasons).toContain("redis unreachable");
      const token = await signToken("degraded");
      const sockets = [
        await connectRegistered(a.publicUrl, token, "degraded"),
        await connectRegistered(a.publicUrl, token, "degraded"),
      ];
      const got = sockets.map((s) => nextEvent(s, "still-here"));
      const res = await a.api("POST", "/api/push", {
        userId: "degraded",
        event: "still-here",
        payload: "yes",
      });
      expect(res.status).toBe(202);
      expect(await Promise.all(got)).toEqual(["yes", "yes"]);
      const lines =
        a.output().match(/"module":"redis"[^\n]*redis unreachable at start[^\n]*/g) ?? [];
      // One per worker, not one per retry.
      expect(lines, a.output()).toHaveLength(2);
      expect(lines[0]).toContain("WRONGPASS");
      expect(a.output()).not.toContain(wrong);
    } finally {
      closeAllClients();
      await stopHosts();
      await redis.stop();
    }
  });

  const openssl = hasCommand("openssl", ["version"]);
  it.skipIf(!openssl)(
    "rediss:// connects over TLS (CA given to Node with NODE_EXTRA_CA_CERTS)",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "ss-redis-tls-"));
      const [cert, key] = [join(dir, "cert.pem"), join(dir, "key.pem")];
      execFileSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:prime256v1",
          "-nodes",
          "-keyout",
          key,
          "-out",
          cert,
          "-days",
          "1",
          "-subj",
          "/CN=localhost",
          "-addext",
          "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        { stdio: "ignore" },
      );
      expect(readFileSync(cert, "utf8")).toContain("BEGIN CERTIFICATE");
      const tlsPort = await freePort();
      const redis = await startRedis([
        "--tls-port",
        String(tlsPort),
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key,
        "--tls-ca-cert-file",
        cert,
        "--tls-auth-clients",
        "no",
      ]);
      try {
        const env = { REDIS_URL: `rediss://localhost:${tlsPort}`, NODE_EXTRA_CA_CERTS: cert };
        const [a, b] = await Promise.all([host(env), host(env)]);
        await waitForHosts([a, b], 1);
        await crossHostPush(a, b, "tls-u1");
        expect(a.output()).toContain('"tls":true');
      } finally {
        closeAllClients();
        await stopHosts();
        await redis.stop();
      }
    },
  );

  it("a malformed REDIS_URL stops the start with one clear line that does not echo it", async () => {
    const bad = "redis://:test-only-secret-in-url@redis.internal:6379/not-a-db";
    const s = await startServer({ env: { REDIS_URL: bad }, startTimeoutMs: 15_000 }).catch(
      (e: Error) => e,
    );
    expect(s).toBeInstanceOf(Error);
    const message = (s as Error).message;
    expect(message).toMatch(/REDIS_URL: got a secret value \(not shown\), expected a redis:\/\//);
    expect(message).not.toContain("test-only-secret-in-url");
  });
});
