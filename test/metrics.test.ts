import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  connect,
  connectRegistered,
  emitAck,
  nextEvent,
  type TestSocket,
} from "./support/client.js";
import { signToken } from "./support/fixtures.js";
import { parseScrape, type Scrape, scrape } from "./support/prom-text.js";
import { useServer } from "./support/server.js";
import { waitFor } from "./support/wait.js";

// Two workers, real clients, and the aggregated /metrics checked number by
// number: before and after a worker is SIGKILLed and restarted, and while a
// worker is stopped (SIGSTOP) and cannot answer.

const server = useServer({ workers: 2, env: { QUERY_TIMEOUT_MS: "700" } });

const slotOf = (s: TestSocket) => Number.parseInt(String(s.io.engine.id).split("_")[0]!, 36);

async function workers(): Promise<{ worker: number; pid: number }[]> {
  const res = await server.api("GET", "/api/status");
  return ((await res.json()) as { workers: { worker: number; pid: number }[] }).workers;
}

/** The counters and gauges this test drives, read from one scrape. */
function counts(m: Scrape) {
  return {
    connections: m.value("socket_server_gateway_connections"),
    registered: m.value("socket_server_gateway_registered_sockets"),
    connects: m.value("socket_server_gateway_connects_total"),
    authInvalid: m.value("socket_server_auth_failures_total", { code: "AUTH_INVALID" }),
    authMissing: m.value("socket_server_auth_failures_total", { code: "AUTH_MISSING" }),
    pushes: m.value("socket_server_push_requests_total", { target: "user", outcome: "accepted" }),
    pushesOut: m.value("socket_server_gateway_events_out_total", { kind: "push" }),
    registers: m.value("socket_server_gateway_events_in_total", { kind: "register" }),
    forbidden: m.value("socket_server_gateway_event_rejections_total", { code: "FORBIDDEN" }),
    pushRequests: m.value("socket_server_api_requests_total", {
      method: "POST",
      route: "/api/push",
      status: "202",
    }),
    emitLatencyCount: m.value("socket_server_push_emit_latency_seconds_count"),
  };
}

describe("the forked workers", () => {
  it("run with the default small young generation (WORKER_SEMI_SPACE_MB 4)", async () => {
    for (const { pid } of await workers()) {
      const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      expect(args).toContain("--max-semi-space-size=4");
    }
  });
});

describe("aggregated /metrics, two workers", () => {
  it("equals what the clients and the API did, before and after a worker restart", async () => {
    const users = ["m0", "m1", "m2", "m3", "m4", "m5"];
    const sockets = await Promise.all(
      users.map(async (u) => connectRegistered(server.publicUrl, await signToken(u), u)),
    );
    const wrongSecret = new TextEncoder().encode("another-secret-that-is-long-enough!!");
    for (let i = 0; i < 2; i++) {
      const bad = await signToken("m9", { secret: wrongSecret });
      await expect(connect(server.publicUrl, bad)).rejects.toMatchObject({
        data: { code: "AUTH_INVALID" },
      });
    }
    await expect(connect(server.publicUrl, undefined)).rejects.toMatchObject({
      data: { code: "AUTH_MISSING" },
    });
    expect(await emitAck(sockets[0]!, "room:join", { room: "not-allowed" })).toMatchObject({
      ok: false,
      error: { code: "FORBIDDEN" },
    });
    for (let i = 0; i < 5; i++) {
      const got = nextEvent(sockets[i]!, "note");
      const res = await server.api("POST", "/api/push", {
        userId: users[i],
        event: "note",
        payload: { i },
      });
      expect(res.status).toBe(202);
      await got;
    }

    const expected = {
      connections: 6,
      registered: 6,
      connects: 6,
      authInvalid: 2,
      authMissing: 1,
      pushes: 5,
      pushesOut: 5,
      registers: 6,
      forbidden: 1,
      pushRequests: 5,
      emitLatencyCount: 5,
    };
    const first = await scrape(server.apiUrl);
    expect(counts(first)).toEqual(expected);
    // At 0 from the start for each worker, so that an alert's increase() sees the first restart.
    expect(first.value("socket_server_worker_restarts_total", { worker: "0" })).toBe(0);
    expect(first.value("socket_server_worker_restarts_total", { worker: "1" })).toBe(0);
    expect(first.value("socket_server_worker_up", { worker: "0" })).toBe(1);
    expect(first.value("socket_server_worker_up", { worker: "1" })).toBe(1);
    // Per-process series keep their worker label through the merge.
    for (const worker of ["0", "1", "primary"]) {
      expect(
        first.value("socket_server_process_resident_memory_bytes", { worker }),
      ).toBeGreaterThan(0);
      expect(first.value("socket_server_process_start_time_seconds", { worker })).toBeGreaterThan(
        0,
      );
    }
    // A second scrape changes nothing.
    expect(counts(await scrape(server.apiUrl))).toEqual(expected);
    // A scraper that called the API first holds a keep-alive connection that
    // the balancer gave a worker: the worker fetches the same merged text.
    const viaWorker = await server.api("GET", "/metrics");
    expect(viaWorker.status).toBe(200);
    expect(viaWorker.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(counts(parseScrape(await viaWorker.text()))).toEqual(expected);

    // SIGKILL worker 0: its sockets drop, the primary restarts it.
    const before = await workers();
    const victim = before.find((w) => w.worker === 0)!;
    const onVictim = sockets.filter((s) => slotOf(s) === 0);
    const dropped = onVictim.map((s) => new Promise((r) => s.once("disconnect", r)));
    process.kill(victim.pid, "SIGKILL");
    await Promise.all(dropped);
    await waitFor(
      "worker 0 to come back",
      async () => {
        const ready = await fetch(`${server.apiUrl}/ready`);
        if (ready.status !== 200) return undefined;
        const now = await workers().catch(() => []);
        const w0 = now.find((w) => w.worker === 0);
        return w0 && w0.pid !== victim.pid ? w0 : undefined;
      },
      20_000,
    );

    const after = await scrape(server.apiUrl);
    // Gauges follow the live sockets; counters keep the dead worker's share.
    expect(counts(after)).toEqual({
      ...expected,
      connections: 6 - onVictim.length,
      registered: 6 - onVictim.length,
    });
    expect(after.value("socket_server_worker_restarts_total", { worker: "0" })).toBe(1);
    expect(after.value("socket_server_worker_restarts_total", { worker: "1" })).toBe(0);
    expect(after.value("socket_server_worker_up", { worker: "0" })).toBe(1);
    expect(after.value("socket_server_worker_up", { worker: "1" })).toBe(1);

    // New work after the restart adds on top, whichever worker takes it.
    const late = await connectRegistered(server.publicUrl, await signToken("m6"), "m6");
    const got = nextEvent(late, "note");
    const push = await server.api("POST", "/api/push", { userId: "m6", event: "note", payload: 1 });
    expect(push.status).toBe(202);
    await got;
    expect(counts(await scrape(server.apiUrl))).toEqual({
      ...expected,
      connections: 7 - onVictim.length,
      registered: 7 - onVictim.length,
      connects: 7,
      registers: 7,
      pushes: 6,
      pushesOut: 6,
      pushRequests: 6,
      emitLatencyCount: 6,
    });
  });

  it("counts each event a broadcast sends once per socket, on both workers", async () => {
    // Sockets on both workers (each worker accepts its own connections, so
    // a few may land on one): at least 4, and more until both hold some.
    const sockets: TestSocket[] = [];
    while (sockets.length < 4 || new Set(sockets.map(slotOf)).size < 2) {
      expect(sockets.length).toBeLessThan(40);
      const u = `b${sockets.length}`;
      sockets.push(await connectRegistered(server.publicUrl, await signToken(u), u));
    }
    const users = sockets.map((_, i) => `b${i}`);
    const base = await waitFor(
      "only this test's sockets",
      async () => {
        const m = await scrape(server.apiUrl);
        return m.value("socket_server_gateway_connections") === users.length ? m : undefined;
      },
      20_000,
    );
    const before = base.value("socket_server_gateway_events_out_total", { kind: "push" })!;
    // Broadcast, a push to one user, broadcast: three runs, counted apart.
    const send = async (body: Record<string, unknown>, to: TestSocket[]) => {
      const got = to.map((s) => nextEvent(s, "all"));
      expect((await server.api("POST", "/api/push", { event: "all", ...body })).status).toBe(202);
      await Promise.all(got);
    };
    await send({ broadcast: true, payload: 1 }, sockets);
    await send({ userId: "b0", payload: 2 }, [sockets[0]!]);
    await send({ broadcast: true, payload: 3 }, sockets);
    const after = await scrape(server.apiUrl);
    expect(after.value("socket_server_gateway_events_out_total", { kind: "push" })).toBe(
      before + 2 * users.length + 1,
    );
  });

  it("answers while a worker is stuck: worker_up 0, its counters kept, its gauges left out", async () => {
    const a = await connectRegistered(server.publicUrl, await signToken("s0"), "s0");
    const b = await connectRegistered(server.publicUrl, await signToken("s1"), "s1");
    // The previous test's clients are closed; wait until the server agrees.
    const base = await waitFor(
      "only this test's two sockets",
      async () => {
        const m = await scrape(server.apiUrl);
        return m.value("socket_server_gateway_connections") === 2 ? m : undefined;
      },
      20_000,
    );
    const connects = base.value("socket_server_gateway_connects_total")!;
    const stuck = (await workers()).find((w) => w.worker === 1)!;
    const onOther = [a, b].filter((s) => slotOf(s) !== 1).length;
    process.kill(stuck.pid, "SIGSTOP");
    try {
      const started = Date.now();
      const during = await scrape(server.apiUrl);
      const took = Date.now() - started;
      expect(took).toBeLessThan(5_000);
      expect(during.value("socket_server_worker_up", { worker: "1" })).toBe(0);
      expect(during.value("socket_server_worker_up", { worker: "0" })).toBe(1);
      expect(during.value("socket_server_gateway_connects_total")).toBe(connects);
      // Only worker 0's sockets are counted while worker 1 cannot say.
      expect(during.value("socket_server_gateway_connections")).toBe(onOther);
      expect(
        during.value("socket_server_process_event_loop_lag_p99_seconds", { worker: "1" }),
      ).toBe(undefined);
    } finally {
      process.kill(stuck.pid, "SIGCONT");
    }
    const back = await scrape(server.apiUrl);
    expect(back.value("socket_server_worker_up", { worker: "1" })).toBe(1);
    expect(back.value("socket_server_gateway_connections")).toBe(2);
  });
});
