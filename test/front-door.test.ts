import http from "node:http";
import type { Socket } from "socket.io-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { emitAck } from "./support/client.js";
import { signToken, TEST_API_KEY } from "./support/fixtures.js";
import { poll, sessionsOn, slotOfSid, source } from "./support/polling.js";
import { closeOpened, open, slotOf } from "./support/protection.js";
import { type RunningServer, startServer } from "./support/server.js";

// Every worker accepts connections on its own socket of each port
// (SO_REUSEPORT); the kernel picks the socket by the connection's addresses
// and ports, so a test cannot choose the worker that accepts. Requests come
// from many loopback source addresses instead: with 2 workers, 16 of them all
// landing on one worker has a chance of 2^-15. Every one must be answered
// right, whichever worker took it: served there, or relayed to the primary,
// which hands it to the session's owner or answers it itself.

const SOURCES = 16;

let server: RunningServer;
beforeAll(async () => {
  server = await startServer({ workers: 2, testHooks: true });
});
afterAll(async () => {
  closeOpened();
  expect(await server.stop()).toBe(0);
});

/** GET from a given source address, on a connection of its own. */
function get(
  port: number,
  path: string,
  from: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path, localAddress: from, agent: false, headers, timeout: 10_000 },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${path}: no answer in 10 s`)));
    req.on("error", reject);
    req.end();
  });
}

async function workerPids(): Promise<Map<number, number>> {
  const res = await server.api("GET", "/api/status", undefined, { connection: "close" });
  const st = (await res.json()) as { workers: { worker: number; pid: number }[] };
  return new Map(st.workers.map((w) => [w.worker, w.pid]));
}

describe("front door", () => {
  it("a polling request reaches the worker that owns its session, whichever worker accepts it", async () => {
    const sessions = await sessionsOn(server.publicPort, [0, 1]);
    for (const [slot, sid] of sessions) {
      expect(slotOfSid(sid)).toBe(slot);
      // A noop packet (6) on the session: "ok" only from its owner (another
      // worker answers 400 "Session ID unknown").
      const answers = await Promise.all(
        Array.from({ length: SOURCES }, (_, i) =>
          poll(server.publicPort, { sid, method: "POST", body: "6", from: source(i) }),
        ),
      );
      for (const a of answers) expect(a).toMatchObject({ status: 200, body: "ok" });
    }
  });

  it("a websocket upgrade of a session reaches its owner, whichever worker accepts it", async () => {
    const token = await signToken("upgrader");
    const sockets: Socket[] = [];
    for (let i = 0; i < SOURCES; i++) {
      sockets.push(
        await open(server.publicUrl, token, {
          transports: ["polling", "websocket"],
          from: source(i),
        }),
      );
    }
    expect(new Set(sockets.map(slotOf))).toEqual(new Set([0, 1]));
    const upgraded = (s: Socket) => s.io.engine.transport.name === "websocket";
    await Promise.all(
      sockets.map(
        (s) =>
          new Promise<void>((resolve, reject) => {
            if (upgraded(s)) return resolve();
            const timer = setTimeout(() => reject(new Error("no upgrade in 5 s")), 5_000);
            s.io.engine.once("upgrade", () => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    for (const s of sockets) {
      expect(upgraded(s)).toBe(true);
      const ack = await emitAck<{ ok: boolean }>(s, "register", { userId: "upgrader" });
      expect(ack.ok).toBe(true);
    }
    for (const s of sockets) s.close();
  });

  it("/health, /ready, /metrics and the dashboard are answered whichever worker accepts", async () => {
    const checks = Array.from({ length: SOURCES }, async (_, i) => {
      const from = source(i);
      const health = await get(server.publicPort, "/health", from);
      expect(health.status).toBe(200);
      // The primary answers it, not a worker.
      expect((JSON.parse(health.body) as { pid: number }).pid).toBe(server.proc.pid);
      expect((await get(server.apiPort, "/health", from)).status).toBe(200);
      expect((await get(server.apiPort, "/ready", from)).status).toBe(200);
      const metrics = await get(server.apiPort, "/metrics", from, {
        authorization: `Bearer ${TEST_API_KEY}`,
      });
      expect(metrics.status).toBe(200);
      expect(metrics.body).toContain("socket_server_");
      const page = await get(server.apiPort, "/dashboard", from);
      expect(page.status).toBe(200);
      expect(page.body).toContain('action="/dashboard/login"');
    });
    await Promise.all(checks);
  });

  it("a worker dying while connections are relayed leaves no client hanging", async () => {
    const sessions = await sessionsOn(server.publicPort, [0, 1]);
    const victim = (await workerPids()).get(0)!;
    // Requests of slot 1's session: those worker 0 accepts are relayed.
    const sid = sessions.get(1)!;
    const answers: Promise<{ status?: number; error?: string; ms: number }>[] = [];
    const t0 = Date.now();
    let killed = false;
    for (let i = 0; Date.now() - t0 < 600; i++) {
      answers.push(
        poll(server.publicPort, {
          sid,
          method: "POST",
          body: "6",
          from: source(i % 200),
          timeoutMs: 8_000,
        }),
      );
      if (!killed && Date.now() - t0 > 200) {
        killed = true;
        process.kill(victim, "SIGKILL");
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const settled = await Promise.all(answers);
    // Each request is answered or fails at once; none waits for the 8 s timeout.
    for (const a of settled) expect(a.error ?? "").not.toBe("hung");
    expect(settled.filter((a) => a.status === 200).length).toBeGreaterThan(settled.length / 2);
    console.log(
      `[figures] ${settled.length} relayed-or-served polls around a SIGKILL: ` +
        `${settled.filter((a) => a.status === 200).length} ok, ` +
        `${settled.filter((a) => a.error).length} failed at once, ` +
        `slowest ${Math.max(...settled.map((a) => a.ms))} ms`,
    );
    // The replacement takes its place and gets sockets to accept on.
    await expect
      .poll(async () => (await workerPids()).get(0), { timeout: 20_000, interval: 200 })
      .not.toBe(victim);
  });
});
