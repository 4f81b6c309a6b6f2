import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startBackend, TEST_BACKEND_SECRET, type TestBackend } from "./support/backend.js";
import { closeAllClients, connectRegistered, emitAck } from "./support/client.js";
import { FORWARDED_EVENT_FIELDS, signToken } from "./support/fixtures.js";
import { startInProcess, type TestServer } from "./support/in-process.js";

/**
 * Client events → the backend, on the one-process layer (a worker behind the
 * primary's modules) and a real HTTP backend on a free port. Assertions are
 * on what the backend received and on the ack the client got. Timings are
 * printed, never asserted tightly. One server at a time (metrics are this
 * process's): `main`, stopped by the shutdown test, then `overload`, then
 * `disabled`.
 */

interface AckOk {
  ok: true;
  data: unknown;
}
interface AckErr {
  ok: false;
  error: { code: string; message: string; details?: unknown; retryAfter?: number };
}
type Ack = AckOk | AckErr;

const ATTEMPT_TIMEOUT_MS = 400;
const DEADLINE_MS = 1_500;
const HALF_OPEN_MS = 2_000;
const MAX_ATTEMPTS = 4;

let backend: TestBackend;
let main: TestServer;
let overload: TestServer;
let disabled: TestServer;

beforeAll(async () => {
  backend = await startBackend();
  main = await startInProcess({
    env: {
      BACKEND_URL: backend.url,
      BACKEND_SIGNING_SECRET: TEST_BACKEND_SECRET,
      BACKEND_ATTEMPT_TIMEOUT_MS: String(ATTEMPT_TIMEOUT_MS),
      BACKEND_DEADLINE_MS: String(DEADLINE_MS),
      BACKEND_BREAKER_HALF_OPEN_MS: String(HALF_OPEN_MS),
      BACKEND_RETRY_BASE_DELAY_MS: "20",
      BACKEND_RETRY_MAX_DELAY_MS: "200",
      BACKEND_MAX_ATTEMPTS: String(MAX_ATTEMPTS),
      FORWARD_LIFECYCLE: "true",
      BACKEND_MAX_RESPONSE_BYTES: "4096",
    },
  });
});
afterAll(async () => {
  // The shutdown test stopped it already, unless it failed first.
  const code = await main?.stop();
  await backend?.stop();
  expect(code).toBe(0);
});
afterEach(() => closeAllClients());

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function user(server: TestServer, userId: string, rooms?: string[]) {
  return connectRegistered(server.publicUrl, await signToken(userId, { rooms }), userId);
}

/** Emits and returns the ack with how long it took. */
async function timed(socket: Awaited<ReturnType<typeof user>>, event: string, payload: unknown) {
  const t0 = performance.now();
  const ack = await emitAck<Ack>(socket, event, payload);
  return { ack, ms: performance.now() - t0 };
}

/** The one backend request this ack's id maps to (the id is echoed back by the default answer). */
function onlyRequest(event: string) {
  const list = backend.requestsOf(event);
  expect(list).toHaveLength(1);
  return list[0]!;
}

interface WorkerStatus {
  pid: number;
  forwarding: { transport: string; breaker: string | null; inFlight: number };
}
async function workerStatuses(server: TestServer): Promise<WorkerStatus[]> {
  const res = await server.api("GET", "/api/status");
  expect(res.status).toBe(200);
  return ((await res.json()) as { workers: WorkerStatus[] }).workers;
}

async function metricsText(server: TestServer): Promise<string> {
  const res = await fetch(`${server.apiUrl}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}
/** The value of one series (name with its labels, as printed) in Prometheus text. */
function metricValue(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : Number.NaN;
}

describe("forwarding over HTTP", () => {
  it("200: the backend gets the contract body and headers, signed; the ack carries its answer", async () => {
    const s = await user(main, "alice", ["chat:*"]);
    expect(await emitAck(s, "room:join", { room: "chat:1" })).toMatchObject({ ok: true });
    backend.script("chat:send", [{ status: 200, json: { stored: true, n: [1, "é✓"] } }]);
    const { ack } = await timed(s, "chat:send", { text: "hi", nested: { a: [1, 2] } });
    expect(ack).toEqual({ ok: true, data: { stored: true, n: [1, "é✓"] } });

    const r = onlyRequest("chat:send");
    expect(r.method).toBe("POST");
    expect(r.url).toBe("/events");
    expect(r.headers["content-type"]).toBe("application/json");
    expect(Object.keys(r.body!)).toEqual(FORWARDED_EVENT_FIELDS);
    expect(r.body).toMatchObject({
      event: "chat:send",
      payload: { text: "hi", nested: { a: [1, 2] } },
      userId: "alice",
      socketId: s.id,
    });
    expect(r.body!.id).toMatch(uuid);
    expect(r.headers["x-request-id"]).toBe(r.body!.id);
    expect(r.headers["x-attempt"]).toBe("1");
    expect((r.body!["rooms"] as string[]).sort()).toEqual(["chat:1", "user:alice"]);
    expect(Math.abs(Date.parse(r.body!["receivedAt"] as string) - Date.now())).toBeLessThan(60_000);
    expect(backend.verify(r)).toBe(true);
    // A tampered body does not verify: the check is real.
    expect(backend.verify({ ...r, raw: r.raw.replace("hi", "ho") })).toBe(false);
  });

  it("a missing payload is sent as null; several arguments as an array", async () => {
    const s = await user(main, "bob");
    const none = await emitAck<Ack>(s, "no-args");
    expect(none).toMatchObject({ ok: true });
    expect(onlyRequest("no-args").body!.payload).toBeNull();
    await emitAck(s, "many-args", 1, "two", { three: 3 });
    expect(onlyRequest("many-args").body!.payload).toEqual([1, "two", { three: 3 }]);
  });

  it("204 with no body acks { ok: true, data: null }", async () => {
    const s = await user(main, "bob");
    backend.script("empty", [{ status: 204 }]);
    expect((await timed(s, "empty", {})).ack).toEqual({ ok: true, data: null });
  });

  it("400: BACKEND_REJECTED with the backend's JSON in details, not retried", async () => {
    const s = await user(main, "carol");
    backend.script("bad-input", [{ status: 400, json: { error: "text too long" } }]);
    const { ack } = await timed(s, "bad-input", { text: "x" });
    expect(ack).toEqual({
      ok: false,
      error: {
        code: "BACKEND_REJECTED",
        message: "the backend answered 400",
        details: { status: 400, body: { error: "text too long" } },
      },
    });
    expect(onlyRequest("bad-input").attempt).toBe(1);
  });

  it("500 then 200: retried with the same id and body, then acked ok", async () => {
    const s = await user(main, "dave");
    backend.script("flaky", [{ status: 500, text: "oops" }]);
    const { ack } = await timed(s, "flaky", { n: 7 });
    expect(ack).toEqual({
      ok: true,
      data: { echo: { event: "flaky", payload: { n: 7 } }, attempt: 2 },
    });
    const list = backend.requestsOf("flaky");
    expect(list.map((r) => r.attempt)).toEqual([1, 2]);
    expect(list[1]!.body!.id).toBe(list[0]!.body!.id);
    expect(list[1]!.raw).toBe(list[0]!.raw);
    expect(list.map((r) => r.headers["x-attempt"])).toEqual(["1", "2"]);
    expect(list.map((r) => r.headers["x-request-id"])).toEqual([
      list[0]!.body!.id,
      list[0]!.body!.id,
    ]);
    expect(list.every((r) => backend.verify(r))).toBe(true);
  });

  it("two 503s then 200: acked ok and the breaker stays closed", async () => {
    const s = await user(main, "erin");
    backend.script("busy", [{ status: 503 }, { status: 503 }]);
    const { ack } = await timed(s, "busy", {});
    expect(ack).toMatchObject({ ok: true });
    expect(backend.requestsOf("busy").map((r) => r.attempt)).toEqual([1, 2, 3]);
    for (const w of await workerStatuses(main)) {
      expect(w.forwarding).toMatchObject({ transport: "http", breaker: "closed" });
    }
  });

  it("connection closed mid-request: retried, then acked ok", async () => {
    const s = await user(main, "frank");
    backend.script("drop", [{ close: true }]);
    const { ack } = await timed(s, "drop", { x: 1 });
    expect(ack).toMatchObject({ ok: true, data: { attempt: 2 } });
    expect(backend.requestsOf("drop").map((r) => r.attempt)).toEqual([1, 2]);
  });

  it("garbage instead of HTTP, every time: BACKEND_UNAVAILABLE after every attempt", async () => {
    const s = await user(main, "grace");
    backend.script("garbled", [], { garbage: true });
    const { ack } = await timed(s, "garbled", {});
    expect(ack).toMatchObject({ ok: false, error: { code: "BACKEND_UNAVAILABLE" } });
    const list = backend.requestsOf("garbled");
    expect(list.map((r) => r.attempt)).toEqual([1, 2, 3, 4].slice(0, MAX_ATTEMPTS));
    expect(new Set(list.map((r) => r.body!.id)).size).toBe(1);
  });

  it("non-JSON 200: BACKEND_REJECTED 'the backend answered non-JSON', not retried", async () => {
    const s = await user(main, "heidi");
    backend.script("html", [{ status: 200, text: "<html>hello</html>", contentType: "text/html" }]);
    const { ack } = await timed(s, "html", {});
    expect(ack).toEqual({
      ok: false,
      error: { code: "BACKEND_REJECTED", message: "the backend answered non-JSON" },
    });
    expect(onlyRequest("html").attempt).toBe(1);
  });

  it("an answer over BACKEND_MAX_RESPONSE_BYTES: BACKEND_REJECTED, not buffered, not retried", async () => {
    const s = await user(main, "hugo");
    backend.script("huge", [{ status: 200, json: { blob: "x".repeat(100_000) } }]);
    expect((await timed(s, "huge", {})).ack).toEqual({
      ok: false,
      error: { code: "BACKEND_REJECTED", message: "the backend's answer was too large" },
    });
    expect(onlyRequest("huge").attempt).toBe(1);
    expect((await timed(s, "after-huge", {})).ack).toMatchObject({ ok: true });
  });

  it("a hanging backend: BACKEND_TIMEOUT within the deadline, attempts cut at the attempt timeout", async () => {
    const s = await user(main, "ivan");
    backend.script("stuck", [], { hang: true });
    const { ack, ms } = await timed(s, "stuck", {});
    console.log(
      `hang → ${JSON.stringify(ack)} after ${Math.round(ms)} ms (deadline ${DEADLINE_MS})`,
    );
    expect(ack).toMatchObject({ ok: false, error: { code: "BACKEND_TIMEOUT" } });
    expect(ms).toBeLessThan(DEADLINE_MS + 2_000);
    // Each attempt was abandoned at ATTEMPT_TIMEOUT_MS, so more than one fit in the deadline.
    const list = backend.requestsOf("stuck");
    expect(list.length).toBeGreaterThanOrEqual(2);
    expect(new Set(list.map((r) => r.body!.id)).size).toBe(1);
    // The worker stays responsive meanwhile and afterwards.
    expect((await timed(s, "after-hang", {})).ack).toMatchObject({ ok: true });
  });

  it("bad input is answered INVALID_PAYLOAD and nothing is forwarded", async () => {
    const s = await user(main, "judy");
    const before = backend.requests.length;
    const long = "x".repeat(129);
    expect(await emitAck<Ack>(s, long, {})).toMatchObject({
      ok: false,
      error: { code: "INVALID_PAYLOAD" },
    });
    for (const reserved of ["ping", "pong", "error"]) {
      expect(await emitAck<Ack>(s, reserved, {})).toMatchObject({
        ok: false,
        error: { code: "INVALID_PAYLOAD" },
      });
    }
    expect(await emitAck<Ack>(s, "bad name!", {})).toMatchObject({
      ok: false,
      error: { code: "INVALID_PAYLOAD" },
    });
    const bin = await emitAck<Ack>(s, "upload", { file: Buffer.from([1, 2, 3]) });
    expect(bin).toEqual({
      ok: false,
      error: {
        code: "INVALID_PAYLOAD",
        message: "binary payloads cannot be forwarded; send JSON (e.g. base64 strings)",
      },
    });
    // The socket is still served (an "error" event must not crash the worker).
    expect((await timed(s, "still-here", {})).ack).toMatchObject({ ok: true });
    const forwarded = backend.requests
      .slice(before)
      .map((r) => r.body!.event)
      .filter((e) => e !== "connect" && e !== "disconnect");
    expect(forwarded).toEqual(["still-here"]);
    expect(main.output()).not.toMatch(/uncaught|exited|restart/i);
  });

  it("lifecycle: connect and disconnect of a registered user reach the backend", async () => {
    const s = await user(main, "kate", ["team:*"]);
    const socketId = s.id;
    const connected = await backend.waitFor(
      (r) => r.body?.event === "connect" && r.body.socketId === socketId,
    );
    expect(connected.body).toMatchObject({ userId: "kate", rooms: ["user:kate"] });
    expect((connected.body!.payload as { connectedAt: string }).connectedAt).toMatch(/^\d{4}-/);
    expect(backend.verify(connected)).toBe(true);
    await emitAck(s, "room:join", { room: "team:red" });
    s.disconnect();
    const gone = await backend.waitFor(
      (r) => r.body?.event === "disconnect" && r.body.socketId === socketId,
    );
    expect(gone.body).toMatchObject({
      userId: "kate",
      payload: { reason: "client namespace disconnect" },
    });
    expect((gone.body!["rooms"] as string[]).sort()).toEqual(["team:red", "user:kate"]);
  });

  // One test, one socket: the breaker is per worker and the socket stays on its worker.
  it("500 forever: BACKEND_UNAVAILABLE after each event's attempts; the breaker opens, acks fail fast without reaching the backend, and it closes again once the backend is back", async () => {
    const s = await user(main, "mallory");
    backend.setDefault({ status: 500, text: "down" });
    let opened: AckErr | undefined;
    const acks: Ack[] = [];
    for (let i = 0; i < 40 && !opened; i++) {
      const { ack } = await timed(s, "dead", { i });
      acks.push(ack);
      if (!ack.ok && /circuit breaker open/.test(ack.error.message)) opened = ack;
    }
    expect(opened?.error.code).toBe("BACKEND_UNAVAILABLE");
    // Before it opened: every event was tried MAX_ATTEMPTS times with one id.
    const first = backend
      .requestsOf("dead")
      .filter((r) => r.body!.payload && (r.body!.payload as { i: number }).i === 0);
    expect(first.map((r) => r.attempt)).toEqual([1, 2, 3, 4].slice(0, MAX_ATTEMPTS));
    expect(acks[0]).toMatchObject({
      ok: false,
      error: { code: "BACKEND_UNAVAILABLE", message: "the backend answered 500" },
    });
    // "Within a few dozen failures": the default threshold is 20 attempts.
    const failedAttempts = backend.requestsOf("dead").length;
    console.log(`breaker opened after ${acks.length} events, ${failedAttempts} failed attempts`);
    expect(failedAttempts).toBeLessThanOrEqual(40);

    const statuses = await workerStatuses(main);
    expect(statuses.some((w) => w.forwarding.breaker === "open")).toBe(true);
    const open = await metricsText(main);
    expect(metricValue(open, "socket_server_forward_breaker_state")).toBe(2);
    expect(metricValue(open, "socket_server_forward_retries_total")).toBeGreaterThan(0);
    expect(
      metricValue(open, 'socket_server_forward_requests_total{outcome="backend_unavailable"}'),
    ).toBeGreaterThanOrEqual(acks.length);

    const sentBefore = backend.requestsOf("dead").length;
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const { ack, ms } = await timed(s, "dead", { fast: i });
      expect(ack).toMatchObject({ ok: false, error: { code: "BACKEND_UNAVAILABLE" } });
      times.push(ms);
    }
    times.sort((a, b) => a - b);
    console.log(
      `breaker open: 20 acks, median ${times[10]!.toFixed(1)} ms, max ${times[19]!.toFixed(1)} ms (round trip through the server)`,
    );
    // Fail fast: well under one attempt timeout, and nothing reached the backend.
    expect(times[10]!).toBeLessThan(ATTEMPT_TIMEOUT_MS);
    expect(backend.requestsOf("dead").length).toBe(sentBefore);

    // Recovery: once HALF_OPEN_MS has passed the breaker lets a probe through.
    backend.setDefault(undefined);
    let ack: Ack | undefined;
    const t0 = Date.now();
    while (Date.now() - t0 < HALF_OPEN_MS + 8_000) {
      ack = (await timed(s, "dead", { probe: true })).ack;
      if (ack.ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(ack).toMatchObject({ ok: true });
    console.log(`breaker recovered ${Date.now() - t0} ms after the backend came back`);
    for (const w of await workerStatuses(main)) expect(w.forwarding.breaker).toBe("closed");
    expect(metricValue(await metricsText(main), "socket_server_forward_breaker_state")).toBe(0);
    expect((await timed(s, "after-recovery", {})).ack).toMatchObject({ ok: true });
  });
});

describe("shutdown", () => {
  // Runs last on `main` (it stops it), as the primary does on SIGTERM.
  it("shutdown lets a forward in flight finish, and reports the sockets it closes as disconnect", async () => {
    const s = await user(main, "paul");
    const socketId = s.id;
    // Well under ATTEMPT_TIMEOUT_MS, so only the shutdown could cut it short (at
    // 350 ms a loaded machine timed the attempt out: the backend shares this
    // process's event loop); the shutdown starts as soon as the request arrives.
    backend.script("long", [{ status: 200, json: { late: true }, delayMs: 250 }]);
    const ack = emitAck<Ack>(s, "long", { x: 1 }).catch((err: Error) => err.message);
    const r = await backend.waitFor((q) => q.body?.event === "long");
    const t0 = Date.now();
    expect(await main.stop()).toBe(0);
    console.log(
      `worker stopped ${Date.now() - t0} ms after the shutdown began; backend request ${r.outcome}`,
    );
    expect(r.outcome).toBe("answered");
    // Forwards are drained while clients are still connected: the ack arrives.
    expect(await ack).toEqual({ ok: true, data: { late: true } });
    const gone = await backend.waitFor(
      (q) => q.body?.event === "disconnect" && q.body.socketId === socketId,
      2_000,
    );
    expect(gone.body).toMatchObject({ userId: "paul" });
  });
});

describe("bounded concurrency", () => {
  beforeAll(async () => {
    overload = await startInProcess({
      env: {
        BACKEND_URL: backend.url,
        BACKEND_MAX_CONCURRENCY: "1",
        BACKEND_MAX_QUEUE: "1",
      },
    });
  });
  afterAll(async () => {
    expect(await overload.stop()).toBe(0);
  });

  it("queue full: OVERLOADED at once; the running and queued events are answered", async () => {
    const s = await user(overload, "nina");
    backend.script("slow", [], { status: 200, json: { done: true }, delayMs: 800 });
    const t0 = performance.now();
    const pending = Array.from({ length: 5 }, (_, i) =>
      emitAck<Ack>(s, "slow", { i }).then((ack) => ({ ack, ms: performance.now() - t0 })),
    );
    const results = await Promise.all(pending);
    const ok = results.filter((r) => r.ack.ok);
    const refused = results.filter((r) => !r.ack.ok);
    expect(ok).toHaveLength(2); // one running (concurrency 1) + one queued (queue 1)
    expect(refused).toHaveLength(3);
    for (const r of refused) {
      expect(r.ack).toMatchObject({ ok: false, error: { code: "OVERLOADED", retryAfter: 1 } });
      // Answered before the first slow answer came back.
      expect(r.ms).toBeLessThan(Math.min(...ok.map((o) => o.ms)));
    }
    expect(backend.requestsOf("slow")).toHaveLength(2);
  });
});

describe("without BACKEND_URL", () => {
  beforeAll(async () => {
    disabled = await startInProcess();
  });
  afterAll(async () => {
    expect(await disabled.stop()).toBe(0);
  });

  it("answers FORWARDING_DISABLED and reports the transport as disabled", async () => {
    const s = await user(disabled, "oscar");
    expect(await emitAck(s, "chat:send", {})).toMatchObject({
      ok: false,
      error: { code: "FORWARDING_DISABLED" },
    });
    for (const w of await workerStatuses(disabled)) {
      expect(w.forwarding).toEqual({ transport: "disabled", breaker: null, inFlight: 0 });
    }
  });
});
