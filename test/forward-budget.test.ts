import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createForwardBudget } from "../src/worker/forward/forward-budget.js";
import { createForwardTracker } from "../src/worker/forward/forward-service.js";
import type { ForwardReply } from "../src/worker/forward/backend-contract.js";
import { startBackend, type TestBackend } from "./support/backend.js";
import { closeAllClients, connectRegistered, emitAck } from "./support/client.js";
import { signToken } from "./support/fixtures.js";
import { startInProcess, type TestServer } from "./support/in-process.js";
import { type RunningServer, startServer } from "./support/server.js";
import { waitFor } from "./support/wait.js";

/**
 * The byte budget of client events waiting on the backend: the module alone,
 * then on servers whose backend stalls: the flood on a real one-worker
 * cluster, whose worker's RSS (read from /api/status) is that worker's alone;
 * the worker's budget on the one-process layer.
 */

type Server = Pick<RunningServer, "publicUrl" | "api">;

type Ack =
  | { ok: true; data: unknown }
  | { ok: false; error: { code: string; message: string; retryAfter?: number } };

const limits = (perSocket: number, perWorker: number) => ({
  FORWARD_MAX_PENDING_BYTES_PER_SOCKET: perSocket,
  FORWARD_MAX_PENDING_BYTES_PER_WORKER: perWorker,
});

describe("the budget", () => {
  it("refuses what would take a socket over its limit; other sockets are not charged for it", () => {
    const budget = createForwardBudget(limits(100, 1_000));
    const a1 = budget.take("a", 60);
    expect(a1.ok).toBe(true);
    expect(budget.take("a", 41)).toEqual({ ok: false, over: "socket" });
    const a2 = budget.take("a", 40); // exactly at the limit is allowed
    expect(a2.ok).toBe(true);
    expect(budget.bytesOf("a")).toBe(100);
    expect(budget.take("b", 100).ok).toBe(true);
    expect(budget.bytes).toBe(200);
    expect(budget.sockets).toBe(2);
  });

  it("refuses what would take the worker over its limit, whichever socket asks", () => {
    const budget = createForwardBudget(limits(100, 250));
    expect(budget.take("a", 100).ok).toBe(true);
    expect(budget.take("b", 100).ok).toBe(true);
    expect(budget.take("c", 51)).toEqual({ ok: false, over: "worker" });
    // A refusal holds nothing, not even an empty entry.
    expect(budget.bytes).toBe(200);
    expect(budget.sockets).toBe(2);
    expect(budget.take("c", 50).ok).toBe(true);
    expect(budget.bytes).toBe(250);
  });

  it("gives bytes back on release, once; a socket back at 0 leaves no entry", () => {
    const budget = createForwardBudget(limits(100, 1_000_000));
    const taken = budget.take("a", 80);
    if (!taken.ok) throw new Error("not taken");
    const other = budget.take("a", 20);
    if (!other.ok) throw new Error("not taken");
    taken.release();
    taken.release(); // a second call must not give back someone else's bytes
    expect(budget.bytesOf("a")).toBe(20);
    expect(budget.bytes).toBe(20);
    other.release();
    expect(budget.sockets).toBe(0);
    expect(budget.bytes).toBe(0);

    // Ten thousand sockets that came and went: nothing left per socket id.
    const releases: (() => void)[] = [];
    for (let i = 0; i < 10_000; i++) {
      const t = budget.take(`s${i}`, 10);
      if (t.ok) releases.push(t.release);
    }
    expect(budget.sockets).toBe(10_000);
    for (const r of releases) r();
    expect(budget.sockets).toBe(0);
    expect(budget.bytes).toBe(0);
  });
});

describe("the tracker with a budget", () => {
  /** A forward the test settles by hand. */
  function manual() {
    let settle!: (r: ForwardReply) => void;
    let fail!: (err: Error) => void;
    const promise = new Promise<ForwardReply>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    return { work: () => promise, settle, fail };
  }
  const client = (socketId: string, bytes: number) => ({
    kind: "client" as const,
    socketId,
    bytes,
  });

  it("holds a client event's bytes until its forward settles, answered or thrown", async () => {
    const budget = createForwardBudget(limits(100, 150));
    const tracker = createForwardTracker(budget);
    const first = manual();
    const second = manual();
    const p1 = tracker.run(client("a", 70), first.work, () => {});
    const p2 = tracker.run(client("b", 70), second.work, () => {});
    expect(tracker.pendingBytes).toBe(140);

    let ran = false;
    const refused = await tracker.run(
      client("c", 20),
      async () => {
        ran = true;
        return { ok: true, data: null };
      },
      () => {},
    );
    expect(refused).toMatchObject({ ok: false, error: { code: "OVERLOADED", retryAfter: 1 } });
    expect(ran).toBe(false);
    expect(tracker.inFlight).toBe(2);

    first.settle({ ok: true, data: 1 });
    expect(await p1).toEqual({ ok: true, data: 1 });
    expect(budget.bytesOf("a")).toBe(0);
    expect(tracker.pendingBytes).toBe(70);

    second.fail(new Error("boom"));
    expect(await p2).toMatchObject({ ok: false, error: { code: "BACKEND_UNAVAILABLE" } });
    expect(tracker.pendingBytes).toBe(0);
    expect(budget.sockets).toBe(0);
  });

  it("keeps lifecycle events outside the budget", async () => {
    const budget = createForwardBudget(limits(10, 10));
    const tracker = createForwardTracker(budget);
    const held = manual();
    const p = tracker.run({ kind: "lifecycle" }, held.work, () => {});
    expect(tracker.inFlight).toBe(1);
    expect(budget.bytes).toBe(0);
    held.settle({ ok: true, data: null });
    await p;
  });
});

// ---------------------------------------------------------------------------
// Real servers: one worker each, a real HTTP backend that stalls or is slow.

/** The body of one such event is a little over this: ~900 KB. */
const BIG_CHARS = 900_000;
const big = (i: number) => ({ i, blob: "x".repeat(BIG_CHARS) });
const FLOOD = 100;
/** FORWARD_MAX_PENDING_BYTES_PER_SOCKET's default: two ~900 KB events fit, not three. */
const PER_SOCKET = 2_097_152;
const DEADLINE_MS = 60_000;

let backend: TestBackend;
let stalled: RunningServer;
let small: TestServer;

const common = (url: string) => ({
  BACKEND_URL: url,
  MAX_PAYLOAD_BYTES: "1000000",
  RATE_EVENTS_PER_SECOND: "1000",
  RATE_EVENTS_BURST: "1000",
  // The stalled forwards are still waiting at teardown: do not wait long for them.
  SHUTDOWN_TIMEOUT_MS: "3000",
});

beforeAll(async () => {
  backend = await startBackend();
  backend.script("stall", [], { hang: true });
  backend.script("slow", [], { status: 200, json: { done: true }, delayMs: 3_000 });
  backend.script("quick", [], { status: 200, json: { stored: true } });
  [stalled, small] = await Promise.all([
    startServer({
      workers: 1,
      env: {
        ...common(backend.url),
        // Nothing is answered or retried within the test.
        BACKEND_ATTEMPT_TIMEOUT_MS: String(DEADLINE_MS),
        BACKEND_DEADLINE_MS: String(DEADLINE_MS),
      },
    }),
    startInProcess({
      env: {
        ...common(backend.url),
        FORWARD_MAX_PENDING_BYTES_PER_WORKER: "2000000",
        // Longer than the "slow" backend's answer.
        BACKEND_ATTEMPT_TIMEOUT_MS: "10000",
        BACKEND_DEADLINE_MS: "10000",
      },
    }),
  ]);
});
afterAll(async () => {
  const codes = await Promise.all([stalled?.stop(), small?.stop()]);
  await backend?.stop();
  expect(codes).toEqual([0, 0]);
});
afterEach(() => closeAllClients());

async function user(server: Server, userId: string) {
  return connectRegistered(server.publicUrl, await signToken(userId), userId);
}

interface WorkerStatus {
  rssBytes: number;
  forwarding: { inFlight: number; pendingBytes: number };
}
async function onlyWorker(server: Server): Promise<WorkerStatus> {
  const res = await server.api("GET", "/api/status");
  expect(res.status).toBe(200);
  const { workers } = (await res.json()) as { workers: WorkerStatus[] };
  expect(workers).toHaveLength(1);
  return workers[0]!;
}

const MB = 1024 * 1024;

describe("a stalled backend and one flooding socket", () => {
  it("events over the socket's budget are answered OVERLOADED at once, and the worker's RSS stays flat", async () => {
    const s = await user(stalled, "flood");
    const before = await onlyWorker(stalled);
    const t0 = performance.now();
    const acks: { ack: Ack; ms: number }[] = [];
    for (let i = 0; i < FLOOD; i++) {
      // No ack timeout: the events the backend holds are never answered here.
      s.emit("stall", big(i), (ack: Ack) => acks.push({ ack, ms: performance.now() - t0 }));
    }
    // All but the two that fit in the socket's 2 MiB are answered.
    await waitFor(
      "the refusals",
      async () => (acks.length >= FLOOD - 2 ? true : undefined),
      20_000,
    );
    const after = await onlyWorker(stalled);
    const slowest = Math.max(...acks.map((a) => a.ms));
    console.log(
      `${FLOOD} events of ~900 KB to a stalled backend: ${acks.length} acks, the last after ${Math.round(slowest)} ms; ` +
        `worker RSS ${(before.rssBytes / MB).toFixed(0)} MB → ${(after.rssBytes / MB).toFixed(0)} MB; ` +
        `pending ${after.forwarding.pendingBytes} bytes in ${after.forwarding.inFlight} forwards`,
    );
    expect(acks).toHaveLength(FLOOD - 2);
    for (const { ack } of acks) {
      expect(ack).toMatchObject({ ok: false, error: { code: "OVERLOADED", retryAfter: 1 } });
    }
    expect(slowest).toBeLessThan(DEADLINE_MS / 4);
    expect(after.forwarding.inFlight).toBe(2);
    expect(after.forwarding.pendingBytes).toBeGreaterThan(2 * BIG_CHARS);
    expect(after.forwarding.pendingBytes).toBeLessThanOrEqual(PER_SOCKET);
    // Only those two reached the backend.
    await waitFor("the two at the backend", async () =>
      backend.requestsOf("stall").length >= 2 ? true : undefined,
    );
    expect(backend.requestsOf("stall")).toHaveLength(2);
    expect(after.rssBytes - before.rssBytes).toBeLessThan(100 * MB);
  }, 60_000);
});

describe("the worker's budget", () => {
  it("a second socket is refused while the first holds the worker's bytes; once the backend answers, events pass again", async () => {
    const [a, b] = await Promise.all([user(small, "ann"), user(small, "ben")]);
    // ann's two events take 1.8 of the worker's 2 MB (and fit in her own 2 MiB).
    const t0 = performance.now();
    const held = [0, 1].map((i) =>
      emitAck<Ack>(a, "slow", big(i)).then((ack) => ({ ack, ms: performance.now() - t0 })),
    );
    await waitFor("ann's events at the backend", async () =>
      backend.requestsOf("slow").length >= 2 ? true : undefined,
    );

    const refused = await emitAck<Ack>(b, "quick", big(2));
    const refusedMs = performance.now() - t0;
    expect(refused).toEqual({
      ok: false,
      error: {
        code: "OVERLOADED",
        message: "too much data is waiting for the backend",
        retryAfter: 1,
      },
    });
    // A small event still fits: the budget counts bytes, not events.
    expect(await emitAck<Ack>(b, "quick", { small: true })).toEqual({
      ok: true,
      data: { stored: true },
    });

    const answered = await Promise.all(held);
    console.log(
      `worker budget: ben refused after ${Math.round(refusedMs)} ms, ann answered after ${answered
        .map((r) => Math.round(r.ms))
        .join(" and ")} ms`,
    );
    for (const r of answered) {
      expect(r.ack).toEqual({ ok: true, data: { done: true } });
      expect(refusedMs).toBeLessThan(r.ms);
    }
    expect((await onlyWorker(small)).forwarding).toMatchObject({ inFlight: 0, pendingBytes: 0 });
    expect(await emitAck<Ack>(b, "quick", big(3))).toEqual({ ok: true, data: { stored: true } });
    expect(backend.requestsOf("quick").map((r) => (r.body!.payload as { i?: number }).i)).toEqual([
      undefined,
      3,
    ]);
  }, 30_000);
});
