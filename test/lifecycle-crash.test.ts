import type { Socket } from "socket.io-client";
import { afterEach, describe, expect, it } from "vitest";
import { emitAck, nextEvent } from "./support/client.js";
import { signToken, TEST_API_KEY } from "./support/fixtures.js";
import { waitExit } from "./support/processes.js";
import {
  closeOpened,
  metricValue,
  open,
  refused,
  slotOf,
  stickyApi,
  until,
} from "./support/protection.js";
import { type PollAnswer, poll, sessionsOn, source } from "./support/polling.js";
import { type RunningServer, startServer, useServer } from "./support/server.js";

const close = { connection: "close" };

// The tests of one crash each share a cluster: each kills or crashes a worker
// and leaves the host healthy again (both workers up, /ready 200) before the
// next one starts. Restarts come after 50 ms instead of 250 ms: the same slot
// crashes several times within 30 s here, and its backoff doubles with each.
const server = useServer({
  workers: 2,
  testHooks: true,
  env: { WORKER_RESTART_BACKOFF_BASE_MS: "50" },
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  closeOpened();
  for (const c of cleanups.splice(0).reverse()) await c();
  await until(
    async () => {
      const r = await fetch(`${server.apiUrl}/ready`, {
        headers: close,
        signal: AbortSignal.timeout(2_000),
      }).catch(() => undefined);
      return r?.status === 200;
    },
    20_000,
    50,
  );
});

/** The first match of `re` in what the shared server printed after `from` (an offset in its output). */
async function printedSince(from: number, re: RegExp, timeoutMs = 15_000): Promise<string> {
  let line = "";
  await until(
    () => {
      line = re.exec(server.output().slice(from))?.[0] ?? "";
      return line !== "";
    },
    timeoutMs,
    50,
  );
  return line;
}

/** Worker pids by slot; a request handed to a worker as it dies may never be answered. */
async function pids(server: RunningServer): Promise<Map<number, number>> {
  const res = await fetch(`${server.apiUrl}/api/status`, {
    headers: { authorization: `Bearer ${TEST_API_KEY}`, ...close },
    signal: AbortSignal.timeout(2_000),
  });
  const st = (await res.json()) as { workers: { worker: number; pid: number }[] };
  return new Map(st.workers.map((w) => [w.worker, w.pid]));
}

async function client(server: RunningServer, userId: string) {
  const s = await open(server.publicUrl, await signToken(userId), { reconnection: true });
  s.on("connect", () => s.emit("register", { userId }));
  expect((await emitAck<{ ok: boolean }>(s, "register", { userId })).ok).toBe(true);
  return s;
}

describe("crash recovery", () => {
  it("kill -9 of a worker mid-traffic: its clients reconnect, the other worker's clients and the API carry on", async () => {
    const restartsBefore = await metricValue(server, "socket_server_worker_restarts_total");
    const users = Array.from({ length: 8 }, (_, i) => `k9-${i}`);
    const sockets: Socket[] = [];
    for (const u of users) sockets.push(await client(server, u));
    const firstSlot = new Map(sockets.map((s) => [s, slotOf(s)]));
    const victims = sockets.filter((s) => firstSlot.get(s) === 0);
    const others = sockets.filter((s) => firstSlot.get(s) === 1);
    expect(victims.length).toBeGreaterThan(0);
    expect(others.length).toBeGreaterThan(0);
    const reasons = new Map<Socket, string[]>(sockets.map((s) => [s, []]));
    for (const s of sockets) s.on("disconnect", (r: string) => reasons.get(s)!.push(r));

    // Traffic both ways until the end of the test.
    let running = true;
    const failures: { at: number; what: string }[] = [];
    const statuses = new Map<number, number>();
    let killedAt = 0;
    const traffic = (async () => {
      while (running) {
        try {
          const r = await server.api(
            "POST",
            "/api/push",
            { broadcast: true, event: "tick", payload: Date.now() },
            close,
          );
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        } catch (err) {
          failures.push({ at: Date.now(), what: String((err as Error).cause ?? err) });
        }
        for (const s of sockets) if (s.connected) s.emit("chat", { at: Date.now() });
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    const before = await pids(server);
    killedAt = Date.now();
    process.kill(before.get(0)!, "SIGKILL");
    const restartedIn = await until(
      async () => {
        const now = await pids(server).catch(() => new Map<number, number>());
        return now.has(0) && now.get(0) !== before.get(0);
      },
      15_000,
      50,
    );
    await until(() => sockets.every((s) => s.connected), 15_000);
    await until(
      async () => {
        const r = await fetch(`${server.apiUrl}/ready`);
        return r.status === 200;
      },
      10_000,
      50,
    );
    running = false;
    await traffic;

    for (const s of others) expect(reasons.get(s)).toEqual([]);
    for (const s of victims) expect(reasons.get(s)).toEqual(["transport close"]);
    // Only requests on the wire when the worker died can fail.
    for (const f of failures) expect(f.at - killedAt).toBeLessThan(1_000);
    expect([...statuses.keys()]).toEqual([202]);
    expect(await pids(server).then((p) => p.get(1))).toBe(before.get(1));

    // Everyone is registered again and gets a push.
    await until(
      async () => {
        const online = await Promise.all(
          users.map(
            async (u) =>
              (
                (await (await server.api("GET", `/api/users/${u}`, undefined, close)).json()) as {
                  online: boolean;
                }
              ).online,
          ),
        );
        return online.every(Boolean);
      },
      10_000,
      100,
    );
    const got = sockets.map((s) => nextEvent(s, "after"));
    await server.api("POST", "/api/push", { broadcast: true, event: "after", payload: 1 }, close);
    await Promise.all(got);
    expect(await metricValue(server, "socket_server_worker_restarts_total")).toBeGreaterThanOrEqual(
      restartsBefore + 1,
    );
    console.log(
      `[figures] kill -9: worker replaced in ${restartedIn} ms; ${victims.length} clients reconnected, ` +
        `${others.length} untouched; pushes ${JSON.stringify(Object.fromEntries(statuses))}, ` +
        `${failures.length} failed on the wire`,
    );
  });

  it("connections on their way to a worker that dies are closed or handed to another worker, never left hanging", async () => {
    const before = await pids(server);
    // A polling session on each worker; then one worker stalls. Requests of
    // its session that the other worker accepts are relayed to the primary and
    // wait in its hand-off to the stalled owner (one in flight, the rest
    // queued); the ones the kernel gives the stalled worker wait in its
    // accept queue. Then it is killed.
    const sessions = await sessionsOn(server.publicPort, [0, 1]);
    const block = async (ms: number) => {
      const r = await server.api("POST", "/api/test/block-loop", { ms }, close);
      return ((await r.json()) as { slot: number }).slot;
    };
    const victim = await block(8_000);
    const sid = sessions.get(victim)!;
    const pending: Promise<PollAnswer>[] = [];
    for (let i = 0; i < 16; i++) {
      pending.push(poll(server.publicPort, { sid, from: source(i), timeoutMs: 10_000 }));
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 300));
    const mark = server.output().length;
    process.kill(before.get(victim)!, "SIGKILL");
    const outcomes = await Promise.all(pending);

    expect(outcomes.filter((o) => o.error === "hung")).toEqual([]);
    // The owner is gone: an answer, if any, is Engine.IO's "session unknown" from the other worker.
    for (const o of outcomes) if (o.status !== undefined) expect(o.status).toBe(400);
    // The relayed ones: at least one in flight (closed), the others queued (re-handed).
    const entry = JSON.parse(
      await printedSince(mark, /\{[^\n]*connections in hand-off when the worker died[^\n]*\}/),
    );
    expect(entry.slot).toBe(victim);
    expect(entry.closed + entry.rehanded).toBeGreaterThan(0);
    console.log(
      `[figures] worker killed with connections in hand-off: ${entry.closed} closed, ` +
        `${entry.rehanded} handed to the other worker; outcomes ${JSON.stringify(outcomes)}`,
    );
  });

  it("an uncaught error in a worker is logged with context; the worker is replaced", async () => {
    const before = await pids(server);
    const mark = server.output().length;
    const api = stickyApi(server, TEST_API_KEY);
    const crash = await api.request("POST", "/api/test/crash");
    api.close();
    const slot = (crash.body as { slot: number }).slot;
    const line = await printedSince(mark, /\{[^\n]*uncaught exception in worker[^\n]*\}/);
    const entry = JSON.parse(line) as Record<string, unknown> & {
      err: { message: string; stack: string; type: string };
    };
    expect(entry).toMatchObject({
      level: 60,
      role: "worker",
      worker: slot,
      pid: before.get(slot),
      origin: "uncaughtException",
    });
    expect(entry.err.message).toContain("test-only crash");
    expect(entry.err.stack).toContain("worker-hooks");
    expect(typeof entry["uptimeSeconds"]).toBe("number");
    expect(typeof entry["rssBytes"]).toBe("number");
    await printedSince(mark, /worker exited unexpectedly; restarting/);
    await until(async () => (await pids(server)).get(slot) !== before.get(slot), 10_000, 50);
  });

  it("a worker crashing in a loop makes the primary give up loudly with exit 1", async () => {
    // One crash is survived (the worker is replaced), the second in a row is one too many.
    const looping = await startServer({
      workers: 1,
      testHooks: true,
      env: { WORKER_MAX_CRASHES: "1", WORKER_RESTART_BACKOFF_BASE_MS: "50" },
    });
    cleanups.push(() => looping.stop());
    for (let i = 0; i < 2; i++) {
      const before = (await pids(looping)).get(0);
      await looping.api("POST", "/api/test/crash", undefined, close);
      if (i < 1) {
        await until(
          async () => {
            const now = await pids(looping).catch(() => new Map<number, number>());
            return now.has(0) && now.get(0) !== before;
          },
          10_000,
          50,
        );
      }
    }
    expect(await waitExit(looping.proc, 15_000)).toBe(1);
    expect(looping.output()).toMatch(/worker is crashing in a loop; giving up/);
  });
});

describe("revocations outlive workers", () => {
  it("a worker restarted after a revocation refuses the revoked token (the primary hands it the list)", async () => {
    const revokedToken = await signToken("surv", { jti: "survives-restart" });
    const res = await server.api("POST", "/api/tokens/revoke", { jti: "survives-restart" });
    expect(res.status).toBe(200);
    const before = await pids(server);
    process.kill(before.get(0)!, "SIGKILL");
    await until(
      async () => {
        const now = await pids(server).catch(() => new Map<number, number>());
        return now.has(0) && now.get(0) !== before.get(0);
      },
      15_000,
      50,
    );
    const valid = await signToken("surv-ok");
    // The kernel spreads connections over the workers' listening sockets by
    // address and port: from many source addresses, the valid handshakes
    // and the revoked ones each reach both workers.
    const slots = new Set<number>();
    for (let i = 0; i < 48 && (slots.size < 2 || i < 12); i++) {
      const from = `127.0.0.${10 + i}`;
      if (i % 3 === 0) {
        const s = await open(server.publicUrl, valid, { from });
        slots.add(slotOf(s));
        s.close();
      } else {
        const err = await refused(open(server.publicUrl, revokedToken, { from }));
        expect(err.data?.code).toBe("AUTH_REVOKED");
      }
    }
    // Both workers took handshakes, the restarted one included.
    expect([...slots].sort()).toEqual([0, 1]);
  });
});
