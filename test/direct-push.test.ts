import { describe, expect, it } from "vitest";
import { connect, emitAck, type TestSocket } from "./support/client.js";
import { signToken } from "./support/fixtures.js";
import { postOnFreshConnection, useServer } from "./support/server.js";

// Pushes to users on one host travel only to the workers that hold them
// (src/worker/push/direct-push.ts, src/primary/user-directory.ts). Two real
// workers; each push is sent on a fresh connection so that both workers take
// API requests.

const server = useServer({ workers: 2 });

/** POST on a new connection (the balancer spreads new connections over the workers). */
async function pushOnFreshConnection(body: unknown): Promise<number> {
  const answer = await postOnFreshConnection(server.apiUrl, "/api/push", body);
  if (answer.status === undefined) throw new Error(answer.error);
  return answer.status;
}

const slotOf = (s: TestSocket) => (s.io.engine.id ?? "").split("_")[0] ?? "";

/** Connects sockets for `userId` until there is one on each worker; registers them. */
async function socketOnEachWorker(userId: string): Promise<TestSocket[]> {
  const token = await signToken(userId);
  const bySlot = new Map<string, TestSocket>();
  for (let i = 0; i < 20 && bySlot.size < 2; i++) {
    const s = await connect(server.publicUrl, token);
    if (bySlot.has(slotOf(s))) s.close();
    else bySlot.set(slotOf(s), s);
  }
  expect(bySlot.size).toBe(2);
  const sockets = [...bySlot.values()];
  for (const s of sockets) {
    expect(await emitAck(s, "register", { userId })).toMatchObject({ ok: true });
  }
  return sockets;
}

function collect(socket: TestSocket, event: string): unknown[] {
  const got: unknown[] = [];
  socket.on(event, (p: unknown) => got.push(p));
  return got;
}

async function until(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("pushes to users across workers", () => {
  it("reach every socket of the user, in order, whichever worker takes the request", async () => {
    const sockets = await socketOnEachWorker("dp-alice");
    const got = sockets.map((s) => collect(s, "n"));
    for (let i = 0; i < 12; i++) {
      expect(await pushOnFreshConnection({ userId: "dp-alice", event: "n", payload: i })).toBe(202);
    }
    await until(() => got.every((g) => g.length === 12));
    const expected = Array.from({ length: 12 }, (_, i) => i);
    for (const g of got) expect(g).toEqual(expected);
  });

  it("honour userIds and except across workers", async () => {
    const a = await socketOnEachWorker("dp-a");
    const b = await socketOnEachWorker("dp-b");
    const gotA = a.map((s) => collect(s, "m"));
    const gotB = b.map((s) => collect(s, "m"));
    for (let i = 0; i < 4; i++) {
      await pushOnFreshConnection({
        userIds: ["dp-a", "dp-b"],
        event: "m",
        payload: i,
        options: { except: ["dp-b"] },
      });
    }
    await until(() => gotA.every((g) => g.length === 4));
    // A marker to dp-b afterwards: once it arrives, nothing else is on its way.
    const marks = b.map((s) => collect(s, "mark"));
    await pushOnFreshConnection({ userId: "dp-b", event: "mark", payload: 1 });
    await until(() => marks.every((m) => m.length === 1));
    expect(gotB.flat()).toEqual([]);
  });

  it("a push sent right after the register ack finds the new socket on either worker", async () => {
    for (let round = 0; round < 6; round++) {
      const userId = `dp-fresh-${round}`;
      const s = await connect(server.publicUrl, await signToken(userId));
      const got = collect(s, "hello");
      expect(await emitAck(s, "register", { userId })).toMatchObject({ ok: true });
      expect(await pushOnFreshConnection({ userId, event: "hello", payload: round })).toBe(202);
      await until(() => got.length === 1);
      expect(got).toEqual([round]);
    }
  });

  it("a user push is not overtaken by a room push sent after it", async () => {
    const sockets = await socketOnEachWorker("dp-order");
    // The backend places the user's sockets in the room (no rooms claim needed).
    const put = await server.api("PUT", "/api/rooms/dp-order-room/members/dp-order");
    expect(put.status).toBe(200);
    const got = sockets.map((s) => {
      const seq: string[] = [];
      s.on("u", () => seq.push("user"));
      s.on("r", () => seq.push("room"));
      return seq;
    });
    for (let i = 0; i < 5; i++) {
      await pushOnFreshConnection({ userId: "dp-order", event: "u", payload: i });
      await pushOnFreshConnection({ room: "dp-order-room", event: "r", payload: i });
    }
    await until(() => got.every((g) => g.length === 10));
    for (const g of got) {
      expect(g).toEqual(Array.from({ length: 10 }, (_, i) => (i % 2 ? "room" : "user")));
    }
  });
});
