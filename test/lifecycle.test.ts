import type { Socket } from "socket.io-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type TestBackend, startBackend } from "./support/backend.js";
import { emitAck, nextEvent } from "./support/client.js";
import { signToken } from "./support/fixtures.js";
import { waitExit } from "./support/processes.js";
import { closeOpened, open, until } from "./support/protection.js";
import {
  requestOnFreshConnection,
  type RunningServer,
  startServer,
  workerPids,
} from "./support/server.js";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  closeOpened();
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(env: Record<string, string>, workers = 2): Promise<RunningServer> {
  const s = await startServer({ workers, env });
  cleanups.push(() => s.stop());
  return s;
}
async function backend(): Promise<TestBackend> {
  const b = await startBackend();
  cleanups.push(() => b.stop());
  return b;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function registered(server: RunningServer, userId: string, reconnection = false) {
  const s = await open(server.publicUrl, await signToken(userId), { reconnection });
  // Like a real client: register again after every (re)connect.
  s.on("connect", () => s.emit("register", { userId }));
  const ack = await emitAck<{ ok: boolean }>(s, "register", { userId });
  expect(ack.ok).toBe(true);
  return s;
}

// The host is shared: no request of one test leaves a kept-alive connection
// to a worker behind, which the next test's drain would wait for.
const close = { connection: "close" };

async function statusPids(server: RunningServer): Promise<Map<number, number>> {
  const res = await server.api("GET", "/api/status", undefined, close);
  const st = (await res.json()) as {
    workers: { worker: number; pid: number }[];
  };
  return new Map(st.workers.map((w) => [w.worker, w.pid]));
}

// One host serves two tests in turn: its workers are replaced twice while it
// keeps serving (and it is left serving), then SIGTERM stops it.
describe("one host: rolling restarts, then SIGTERM", () => {
  let be: TestBackend;
  let server: RunningServer;
  beforeAll(async () => {
    be = await startBackend();
    server = await startServer({
      workers: 2,
      env: { BACKEND_URL: be.url, SHUTDOWN_TIMEOUT_MS: "8000" },
    });
  });
  afterAll(async () => {
    await server?.stop();
    await be?.stop();
  });

  it("POST /api/admin/restart-workers and SIGUSR2 replace every worker one at a time while the host keeps serving", async () => {
    const users = ["rr-1", "rr-2", "rr-3", "rr-4"];
    const sockets: Socket[] = [];
    for (const u of users) sockets.push(await registered(server, u, true));
    const reconnects = { n: 0 };
    for (const s of sockets) s.io.on("reconnect", () => reconnects.n++);

    let monitoring = true;
    const seen = { ready: new Map<number, number>(), push: new Map<number, number>() };
    const bump = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);
    const errors: string[] = [];
    const t0 = Date.now();
    const monitor = (async () => {
      while (monitoring) {
        try {
          bump(seen.ready, (await fetch(`${server.apiUrl}/ready`, { headers: close })).status);
        } catch (err) {
          errors.push(`${Date.now() - t0} ms /ready ${String((err as Error).cause ?? err)}`);
        }
        try {
          const r = await server.api(
            "POST",
            "/api/push",
            { broadcast: true, event: "tick", payload: 1 },
            close,
          );
          bump(seen.push, r.status);
        } catch (err) {
          errors.push(`${Date.now() - t0} ms push ${String((err as Error).cause ?? err)}`);
        }
        await new Promise((res) => setTimeout(res, 20));
      }
    })();

    for (const trigger of ["api", "SIGUSR2"] as const) {
      const before = await statusPids(server);
      const t0 = Date.now();
      if (trigger === "api") {
        const res = await server.api("POST", "/api/admin/restart-workers", undefined, close);
        expect(res.status).toBe(202);
      } else {
        server.proc.kill("SIGUSR2");
      }
      await until(
        async () => {
          const now = await statusPids(server);
          return now.size === 2 && [...now].every(([slot, pid]) => pid !== before.get(slot));
        },
        30_000,
        100,
      );
      console.log(`[figures] rolling restart (${trigger}) of 2 workers: ${Date.now() - t0} ms`);
    }
    monitoring = false;
    await monitor;

    expect(errors).toEqual([]);
    // The host never looked down, and pushes were never refused but by a
    // draining worker's 503 on a request it had already taken.
    expect([...seen.ready.keys()]).toEqual([200]);
    for (const status of seen.push.keys()) expect([202, 503]).toContain(status);
    expect(seen.push.get(202)).toBeGreaterThan(10);
    // Every client came back by itself and is registered again.
    await until(() => sockets.every((s) => s.connected), 10_000);
    expect(reconnects.n).toBeGreaterThanOrEqual(users.length);
    const got = sockets.map((s) => nextEvent(s, "after", 10_000));
    await until(
      async () =>
        (
          await Promise.all(
            users.map(
              async (u) =>
                (
                  (await (await server.api("GET", `/api/users/${u}`, undefined, close)).json()) as {
                    online: boolean;
                  }
                ).online,
            ),
          )
        ).every(Boolean),
      10_000,
      100,
    );
    expect(
      (
        await server.api(
          "POST",
          "/api/push",
          { broadcast: true, event: "after", payload: 2 },
          close,
        )
      ).status,
    ).toBe(202);
    await Promise.all(got);
    console.log(
      `[figures] during 2 rolling restarts: /ready ${JSON.stringify(Object.fromEntries(seen.ready))}, ` +
        `pushes ${JSON.stringify(Object.fromEntries(seen.push))}, client reconnects ${reconnects.n}`,
    );
  });

  it("drains: /ready 503 at once, a forward and a push waiting for acks finish, clients told to reconnect, exit 0 in time", async () => {
    be.script("slow", [{ delayMs: 1_500, status: 200, json: { slow: true } }]);
    const a = await registered(server, "term-a");
    const b = await registered(server, "term-b");
    const pids = await workerPids(server);
    expect(pids.length).toBe(2);

    // In flight at SIGTERM: a forwarded event the backend answers in 1.5 s, and
    // a push whose client acks after 1 s.
    b.on("ack-me", (_p: unknown, cb: (r: unknown) => void) => setTimeout(() => cb("done"), 1_000));
    const ackMeSeen = nextEvent(b, "ack-me");
    const push = server.api("POST", "/api/push", {
      userId: "term-b",
      event: "ack-me",
      payload: 1,
      options: { ackTimeoutMs: 5_000 },
    });
    const forwardAt: number[] = [];
    const forward = emitAck<{ ok: boolean; data?: unknown }>(a, "slow", { n: 1 }).then((r) => {
      forwardAt.push(Date.now());
      return r;
    });
    await be.waitFor((r) => r.body?.event === "slow");
    await ackMeSeen;

    const told = [a, b].map((s) =>
      Promise.all([
        nextEvent<{ code: string }>(s, "server:disconnect", 10_000),
        nextEvent<string>(s, "disconnect", 10_000).then((reason) => ({ reason, at: Date.now() })),
      ]),
    );
    const t0 = Date.now();
    server.proc.kill("SIGTERM");

    // The signal is asynchronous: poll until the primary has taken it.
    let reasons: string[] = [];
    const readyMs = await until(
      async () => {
        const r = await fetch(`${server.apiUrl}/ready`);
        reasons = ((await r.json()) as { reasons: string[] }).reasons;
        return r.status === 503;
      },
      2_000,
      5,
    );
    expect(reasons).toContain("draining");
    // Nothing new is taken: another request on a new connection gets a 503 with Retry-After.
    // (Not fetch: its pool may hold a connection a worker took before the signal.)
    const fresh = await requestOnFreshConnection("GET", `${server.apiUrl}/api/status`);
    expect(fresh.status).toBe(503);
    expect(fresh.headers?.["retry-after"]).toBeDefined();

    expect(await forward).toEqual({ ok: true, data: { slow: true } });
    const pushed = await push;
    expect(pushed.status).toBe(202);
    expect(await pushed.json()).toMatchObject({ delivered: 1, acked: 1 });
    for (const [notice, disc] of await Promise.all(told)) {
      expect(notice.code).toBe("SHUTTING_DOWN");
      // A transport close, not "io server disconnect": socket.io-client reconnects by itself.
      expect(disc.reason).toBe("transport close");
    }
    const [, aGone] = await told[0]!;
    expect(forwardAt[0]).toBeLessThanOrEqual(aGone.at);

    expect(await waitExit(server.proc, 15_000)).toBe(0);
    const exitMs = Date.now() - t0;
    expect(exitMs).toBeLessThan(8_000);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    console.log(
      `[figures] SIGTERM: /ready 503 after ${readyMs} ms; exit 0 after ${exitMs} ms ` +
        `(forward in flight 1.5 s, push ack 1 s, SHUTDOWN_TIMEOUT_MS 8000)`,
    );
  });
});

describe("SIGTERM", () => {
  it("a second SIGTERM forces the exit", async () => {
    const be = await backend();
    be.script("stuck", [{ hang: true }]);
    // One worker: the primary's second signal is the subject.
    const server = await start({ BACKEND_URL: be.url, SHUTDOWN_TIMEOUT_MS: "20000" }, 1);
    const a = await registered(server, "stuck-a");
    const pids = await workerPids(server);
    void emitAck(a, "stuck", {}).catch(() => {});
    await be.waitFor((r) => r.body?.event === "stuck");
    const t0 = Date.now();
    server.proc.kill("SIGTERM");
    await fetch(`${server.apiUrl}/ready`); // the first one is being handled
    server.proc.kill("SIGTERM");
    expect(await waitExit(server.proc, 10_000)).toBe(1);
    expect(Date.now() - t0).toBeLessThan(5_000);
    await until(() => pids.every((p) => !alive(p)), 5_000);
  });
});
