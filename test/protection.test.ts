import type { Socket } from "socket.io-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { emitAck } from "./support/client.js";
import { signToken, TEST_API_KEY } from "./support/fixtures.js";
import {
  closeOpened,
  metricValue,
  open,
  refused,
  slotOf,
  stickyApi,
  until,
} from "./support/protection.js";
import { type RunningServer, startServer } from "./support/server.js";

// Limits low enough to reach in a test, on a real 2-worker cluster.
const LIMITS = {
  RATE_EVENTS_PER_SECOND: "20",
  RATE_EVENTS_BURST: "20",
  RATE_CONNECTIONS_PER_IP_PER_MINUTE: "60",
  RATE_PUSHES_PER_KEY_PER_SECOND: "100",
  IP_DENY_LIST: "127.0.0.3/32",
  MAX_EVENT_LOOP_LAG_MS: "300",
  MAX_PUSH_LAG_MS: "300",
  MAX_BUFFERED_BYTES_PER_SOCKET: "262144",
};

let server: RunningServer;
beforeAll(async () => {
  server = await startServer({ workers: 2, env: LIMITS, testHooks: true });
});
afterAll(async () => {
  closeOpened();
  expect(await server.stop()).toBe(0);
});
afterEach(() => closeOpened());

const registered = async (userId: string, from?: string) => {
  const s = await open(server.publicUrl, await signToken(userId), from ? { from } : {});
  const ack = await emitAck<{ ok: boolean }>(s, "register", { userId });
  expect(ack.ok).toBe(true);
  return s;
};

/** Two registered sockets on the same worker. */
async function twoOnOneWorker(a: string, b: string): Promise<[Socket, Socket]> {
  const first = await registered(a);
  // The kernel spreads new connections over the workers: 6 tries all landed
  // on the other one in a CI run (1 in 64), hence up to 30.
  for (let i = 0; i < 30; i++) {
    const s = await registered(b);
    if (slotOf(s) === slotOf(first)) return [first, s];
    s.close();
  }
  throw new Error("no two sockets landed on the same worker");
}

const pct = (xs: number[], p: number) =>
  [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

describe("events per socket", () => {
  it("a burst gets RATE_LIMITED with retryAfter while another socket on the worker keeps getting pushes", async () => {
    const [flooder, listener] = await twoOnOneWorker("flooder", "listener");
    const latencies: number[] = [];
    listener.on("tick", (p: { sentAt: number }) => latencies.push(Date.now() - p.sentAt));

    let pushing = true;
    let sent = 0;
    const pusher = (async () => {
      while (pushing) {
        const res = await server.api("POST", "/api/push", {
          userId: "listener",
          event: "tick",
          payload: { sentAt: Date.now() },
        });
        expect(res.status).toBe(202);
        sent++;
        await new Promise((r) => setTimeout(r, 25));
      }
    })();

    // 15 waves of 30 events, 100 ms apart: 300/s against 20/s with a burst of 20.
    const started = Date.now();
    const waves: Promise<{ ok: boolean; error?: { code: string; retryAfter?: number } }[]>[] = [];
    for (let w = 0; w < 15; w++) {
      waves.push(
        Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            emitAck<{ ok: boolean; error?: { code: string; retryAfter?: number } }>(
              flooder,
              "chat",
              { w, i },
            ),
          ),
        ),
      );
      await new Promise((r) => setTimeout(r, 100));
    }
    const acks = (await Promise.all(waves)).flat();
    const elapsedS = (Date.now() - started) / 1000;
    pushing = false;
    await pusher;
    await until(() => latencies.length === sent, 5_000);

    const limited = acks.filter((a) => a.error?.code === "RATE_LIMITED");
    const passed = acks.filter((a) => a.error?.code !== "RATE_LIMITED");
    // Burst 20 plus 20/s for the time the burst took (register took one token).
    expect(passed.length).toBeLessThanOrEqual(20 + Math.ceil(20 * elapsedS) + 1);
    expect(passed.length).toBeGreaterThanOrEqual(19);
    expect(limited.length).toBeGreaterThan(350);
    for (const a of limited) {
      expect(a.error!.retryAfter).toBeGreaterThan(0);
      expect(a.error!.retryAfter).toBeLessThanOrEqual(0.05 + 1e-9);
    }
    // Every push arrived; the figure is reported, not asserted beyond "not stuck".
    expect(Math.max(...latencies)).toBeLessThan(2_000);
    console.log(
      `[figures] flood: ${acks.length} events in ${elapsedS.toFixed(2)} s, ${passed.length} passed, ` +
        `${limited.length} RATE_LIMITED; ${sent} pushes to the other socket meanwhile, ` +
        `latency p50 ${pct(latencies, 50)} ms, max ${Math.max(...latencies)} ms`,
    );

    // The bucket refills: after the hinted wait the socket is served again.
    await new Promise((r) => setTimeout(r, 100));
    const again = await emitAck<{ error?: { code: string } }>(flooder, "chat", {});
    expect(again.error?.code).toBe("FORWARDING_DISABLED");
    expect(
      await metricValue(server, "socket_server_ratelimit_rejections_total", 'scope="events"'),
    ).toBeGreaterThan(300);
  });

  it("built-in events count too: a register flood is limited", async () => {
    const s = await open(server.publicUrl, await signToken("reg-flood"));
    const acks = await Promise.all(
      Array.from({ length: 60 }, () =>
        emitAck<{ ok: boolean; error?: { code: string } }>(s, "register", { userId: "reg-flood" }),
      ),
    );
    expect(acks.filter((a) => a.ok).length).toBeGreaterThanOrEqual(20);
    expect(acks.filter((a) => a.error?.code === "RATE_LIMITED").length).toBeGreaterThan(20);
  });
});

describe("connections per IP", () => {
  it("a flood from one address is limited; other addresses still connect", async () => {
    const token = await signToken("flood-ip");
    const attempts = await Promise.allSettled(
      Array.from({ length: 100 }, () => open(server.publicUrl, token, { from: "127.0.0.2" })),
    );
    const ok = attempts.filter((a) => a.status === "fulfilled").length;
    const errors = attempts
      .filter((a): a is PromiseRejectedResult => a.status === "rejected")
      .map((a) => a.reason as { message: string; data?: { code?: string; retryAfter?: number } });
    // 60 a minute for the host: 30 per worker, handshakes spread over both.
    expect(ok).toBeLessThanOrEqual(60);
    expect(ok).toBeGreaterThanOrEqual(30);
    expect(errors.length).toBe(100 - ok);
    for (const e of errors) {
      expect(e.message).toBe("rate limited");
      expect(e.data?.code).toBe("RATE_LIMITED");
      expect(e.data?.retryAfter).toBeGreaterThanOrEqual(1);
    }
    // Another address is not affected.
    const other = await open(server.publicUrl, await signToken("other-ip"), { from: "127.0.0.4" });
    expect(other.connected).toBe(true);
  });

  it("an address on IP_DENY_LIST is refused with FORBIDDEN", async () => {
    const err = await refused(
      open(server.publicUrl, await signToken("denied"), { from: "127.0.0.3" }),
    );
    expect(err.message).toBe("forbidden");
    expect(err.data).toEqual({ code: "FORBIDDEN" });
  });
});

describe("pushes per API key", () => {
  it("answers 429 RATE_LIMITED with Retry-After past the rate, then recovers", async () => {
    const results = await Promise.all(
      Array.from({ length: 400 }, () =>
        server.api("POST", "/api/push", { broadcast: true, event: "noop", payload: null }),
      ),
    );
    const limited = results.filter((r) => r.status === 429);
    expect(results.filter((r) => r.status === 202).length).toBeGreaterThanOrEqual(100);
    expect(limited.length).toBeGreaterThan(0);
    const body = (await limited[0]!.json()) as { error: { code: string } };
    expect(body.error.code).toBe("RATE_LIMITED");
    expect(Number(limited[0]!.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    await until(
      async () =>
        (await server.api("POST", "/api/push", { broadcast: true, event: "noop", payload: null }))
          .status === 202,
      5_000,
      200,
    );
  });
});

describe("load shedding", () => {
  it("a stalled worker passes new handshakes on to another worker (OVERLOADED only when none takes them) and refuses pushes with 503, then recovers", async () => {
    const api = stickyApi(server, TEST_API_KEY);
    try {
      const block = await api.request("POST", "/api/test/block-loop", { ms: 1_500 });
      expect(block.status).toBe(200);
      const stalled = (block.body as { slot: number }).slot;

      // Sent while the worker is stalled: queued behind the stall on the same connection.
      const push = api.request("POST", "/api/push", { broadcast: true, event: "x", payload: 1 });
      const started = Date.now();
      const handshakes = await Promise.allSettled(
        Array.from({ length: 6 }, async () => {
          const t0 = Date.now();
          try {
            const s = await open(server.publicUrl, await signToken("shed"));
            return { ok: true as const, slot: slotOf(s), ms: Date.now() - t0 };
          } catch (err) {
            return {
              ok: false as const,
              code: (err as { data?: { code?: string } }).data?.code,
              ms: Date.now() - t0,
            };
          }
        }),
      );
      const outcomes = handshakes.map((h) => (h.status === "fulfilled" ? h.value : undefined));
      // Each worker accepts its own share of new connections (SO_REUSEPORT),
      // so some of these wait behind the stall. Once it ends, the stalled
      // worker passes them on through the primary to a worker that takes new
      // sessions, or, when it knows of none (the other one lags too on a busy
      // machine), refuses them with OVERLOADED. None is served by it.
      const shed = outcomes.filter((o) => o && !o.ok);
      for (const o of shed) expect(o!.ok === false && o!.code).toBe("OVERLOADED");
      for (const o of outcomes) if (o?.ok) expect(o.slot).not.toBe(stalled);
      expect(outcomes.every((o) => o !== undefined)).toBe(true);

      const pushed = await push;
      expect(pushed.status).toBe(503);
      expect((pushed.body as { error: { code: string } }).error.code).toBe("OVERLOADED");
      expect(pushed.headers["retry-after"]).toBe("1");

      // Recovery: the same worker takes pushes and handshakes again.
      const recoveredIn = await until(
        async () =>
          (await api.request("POST", "/api/push", { broadcast: true, event: "x", payload: 1 }))
            .status === 202,
        10_000,
        100,
      );
      // The primary learns of the recovery from the worker's next load report
      // (every second), so keep trying for a while rather than a fixed count.
      let landed = false;
      const until10s = Date.now() + 10_000;
      while (!landed && Date.now() < until10s) {
        const s = await open(server.publicUrl, await signToken("back"));
        landed = slotOf(s) === stalled;
        s.close();
        if (!landed) await new Promise((r) => setTimeout(r, 100));
      }
      expect(landed).toBe(true);
      if (shed.length > 0) {
        expect(
          await metricValue(
            server,
            "socket_server_shed_total",
            'reason="handshake_event_loop_lag"',
          ),
        ).toBeGreaterThan(0);
      }
      expect(
        await metricValue(server, "socket_server_shed_total", 'reason="push_lag"'),
      ).toBeGreaterThan(0);
      console.log(
        `[figures] stall 1500 ms: ${shed.length}/6 handshakes shed, refused after ` +
          `${shed.map((o) => o!.ms).join("/")} ms (stall included); served by the other worker after ` +
          `${outcomes
            .filter((o) => o?.ok)
            .map((o) => o!.ms)
            .join("/")} ms; pushes accepted again ` +
          `${recoveredIn} ms after the 503 (${Date.now() - started} ms after the stall began)`,
      );
    } finally {
      api.close();
    }
  });
});

describe("slow consumers", () => {
  it("a client that does not read is disconnected; its neighbour is not", async () => {
    const [slow, fine] = await twoOnOneWorker("slow-reader", "fine-reader");
    // Stop reading the TCP socket under the websocket: the server's output piles up.
    const transport = slow.io.engine.transport as unknown as { ws: { _socket: { pause(): void } } };
    transport.ws._socket.pause();
    const big = "x".repeat(200_000);
    const got: number[] = [];
    fine.on("small", (n: number) => got.push(n));
    let online = true;
    for (let i = 0; i < 200 && online; i++) {
      const r = await server.api("POST", "/api/push", {
        userId: "slow-reader",
        event: "big",
        payload: big,
      });
      expect(r.status).toBe(202);
      if (i % 20 === 19) {
        const u = (await (await server.api("GET", "/api/users/slow-reader")).json()) as {
          online: boolean;
        };
        online = u.online;
      }
    }
    await until(
      async () =>
        !((await (await server.api("GET", "/api/users/slow-reader")).json()) as { online: boolean })
          .online,
      10_000,
      100,
    );
    // The flood above may have spent this key's API budget: a client retries a 429.
    let r = await server.api("POST", "/api/push", {
      userId: "fine-reader",
      event: "small",
      payload: 1,
    });
    for (let i = 0; i < 10 && r.status === 429; i++) {
      await new Promise((done) => setTimeout(done, 1_000));
      r = await server.api("POST", "/api/push", {
        userId: "fine-reader",
        event: "small",
        payload: 1,
      });
    }
    expect(r.status).toBe(202);
    await until(() => got.length === 1, 5_000);
    expect(fine.connected).toBe(true);
    expect(
      await metricValue(server, "socket_server_shed_total", 'reason="slow_consumer"'),
    ).toBeGreaterThan(0);
  });
});

describe("connection cap", () => {
  let capped: RunningServer;
  beforeAll(async () => {
    capped = await startServer({ workers: 2, env: { MAX_CONNECTIONS_PER_WORKER: "3" } });
  });
  afterAll(async () => {
    closeOpened();
    expect(await capped.stop()).toBe(0);
  });

  it("over MAX_CONNECTIONS_PER_WORKER on every worker, handshakes get OVERLOADED; connected clients keep their pushes", async () => {
    const token = await signToken("cap");
    const sockets: Socket[] = [];
    // The balancer learns a worker is full from its load report (every second).
    while (sockets.length < 6) {
      try {
        sockets.push(await open(capped.publicUrl, token));
      } catch (err) {
        expect((err as { data?: { code?: string } }).data?.code).toBe("OVERLOADED");
        await new Promise((r) => setTimeout(r, 1_100));
      }
    }
    const timings: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const err = await refused(open(capped.publicUrl, token));
      timings.push(performance.now() - t0);
      expect(err.message).toBe("overloaded");
      expect(err.data?.code).toBe("OVERLOADED");
      expect(err.data?.retryAfter).toBe(1);
    }
    // Existing clients are kept and served: the cap sheds handshakes, not pushes.
    for (const s of sockets) expect(s.connected).toBe(true);
    const got = new Promise((resolve) => sockets[0]!.once("hello", resolve));
    const regAck = await emitAck<{ ok: boolean }>(sockets[0]!, "register", { userId: "cap" });
    expect(regAck.ok).toBe(true);
    expect(
      (await capped.api("POST", "/api/push", { userId: "cap", event: "hello", payload: 1 })).status,
    ).toBe(202);
    await got;
    console.log(
      `[figures] handshake refused at the connection cap in ${timings.map((t) => t.toFixed(1)).join("/")} ms`,
    );
  });
});
