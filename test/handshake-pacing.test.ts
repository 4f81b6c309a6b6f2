import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHandshakePacer } from "../src/worker/protection/handshake-pacer.js";
import {
  closeAllClients,
  connect,
  connectRegistered,
  emitAck,
  nextEvent,
} from "./support/client.js";
import { signToken } from "./support/fixtures.js";
import { startInProcess, type TestServer } from "./support/in-process.js";

// New sessions a few per event-loop turn (src/worker/protection/handshake-pacer.ts).

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const open = () => ({ destroyed: false });

describe("createHandshakePacer", () => {
  it("starts perTurn at once, the rest in later turns, in arrival order", async () => {
    const pacer = createHandshakePacer(2);
    const started: number[] = [];
    for (let i = 0; i < 5; i++) pacer.admit(open(), () => started.push(i));
    expect(started).toEqual([0, 1]);
    expect(pacer.waiting()).toBe(3);
    await turn();
    expect(started).toEqual([0, 1, 2, 3]);
    await turn();
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(pacer.waiting()).toBe(0);
    // A new turn's budget: two more at once.
    await turn();
    await turn();
    pacer.admit(open(), () => started.push(5));
    pacer.admit(open(), () => started.push(6));
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it("lets I/O in between: a timer fires before a long queue is through", async () => {
    const pacer = createHandshakePacer(1);
    let started = 0;
    for (let i = 0; i < 200; i++) pacer.admit(open(), () => started++);
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(started).toBeGreaterThan(0);
    expect(started).toBeLessThan(200);
    while (pacer.waiting() > 0) await turn();
    expect(started).toBe(200);
  });

  it("drops a request whose connection closed while it waited, without spending the turn on it", async () => {
    const pacer = createHandshakePacer(1);
    const started: string[] = [];
    const gone = { destroyed: false };
    const session = { readyState: "open" };
    pacer.admit(open(), () => started.push("a"));
    pacer.admit(gone, () => started.push("gone"));
    pacer.admit(session, () => started.push("closed session"));
    pacer.admit(open(), () => started.push("b"));
    gone.destroyed = true;
    session.readyState = "closed";
    await turn();
    expect(started).toEqual(["a", "b"]);
  });

  it("0 turns pacing off", () => {
    const pacer = createHandshakePacer(0);
    let started = 0;
    for (let i = 0; i < 100; i++) pacer.admit(open(), () => started++);
    expect(started).toBe(100);
  });
});

describe("a worker pacing one new session per turn", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startInProcess({
      env: { HANDSHAKES_PER_TURN: "1", RATE_CONNECTIONS_PER_IP_PER_MINUTE: "100000" },
    });
  });
  afterAll(async () => {
    closeAllClients();
    expect(await server.stop()).toBe(0);
  });

  it("takes a burst over both transports, and serves connected clients meanwhile", async () => {
    const first = await connectRegistered(server.publicUrl, await signToken("pace-0"), "pace-0");
    const tokens = await Promise.all(
      Array.from({ length: 80 }, (_, i) => signToken(`pace-${i + 1}`)),
    );
    const burst = tokens.map((token, i) =>
      connectRegistered(server.publicUrl, token, `pace-${i + 1}`, {
        transports: i % 4 === 0 ? ["polling"] : ["websocket"],
      }),
    );
    // A connected client's event is answered while the burst is being taken.
    const acks = await Promise.all(
      Array.from({ length: 5 }, () =>
        emitAck<{ ok: boolean }>(first, "register", { userId: "pace-0" }),
      ),
    );
    for (const ack of acks) expect(ack.ok).toBe(true);
    const sockets = await Promise.all(burst);
    expect(sockets.every((s) => s.connected)).toBe(true);
    // A push reaches the last of them: the sessions are whole.
    const got = nextEvent<{ n: number }>(sockets[79]!, "paced");
    const res = await server.api("POST", "/api/push", {
      userId: "pace-80",
      event: "paced",
      payload: { n: 1 },
    });
    expect(res.status).toBe(202);
    expect(await got).toEqual({ n: 1 });
  });

  it("refuses a bad token as before, with its code", async () => {
    await expect(connect(server.publicUrl, "not-a-jwt")).rejects.toMatchObject({
      data: { code: "AUTH_INVALID" },
    });
  });
});
