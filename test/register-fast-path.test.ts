import type { Socket } from "socket.io-client";
import { describe, expect, it } from "vitest";
import { WORKER_CALLS } from "../src/shared/ipc.js";
import { connect, emitAck } from "./support/client.js";
import {
  connectAndRegister,
  postFresh,
  type RegisterAck,
  record,
  slotOf,
  waitReady,
} from "./support/delivery-helpers.js";
import { signToken } from "./support/fixtures.js";
import { postOnFreshConnection, type RunningServer, useServer } from "./support/server.js";
import { waitFor } from "./support/wait.js";

// `register` asks the primary only for a user who has stored messages: the
// workers keep the set of such users, told by the primary as messages are
// stored, taken, given back and expire. Without the round trip no stored
// message may be missed (register racing a push that stores), a restarted
// worker must know the set, and the user directory, no longer waited for,
// must still let a push sent right after the ack reach the new socket.

const server = useServer({ testHooks: true });

const until = (cond: () => boolean | Promise<boolean>, timeoutMs = 10_000) =>
  waitFor("the condition", async () => ((await cond()) ? true : undefined), timeoutMs);

interface IpcSent {
  slot: number;
  pid: number;
  /** Requests (answered calls) this worker sent its primary, by tag. */
  requests: Record<string, number>;
}

const REQUEST_TAGS = Object.keys(WORKER_CALLS);

/** The IPC requests worker `slot` has sent so far (test hook), asked on fresh connections. */
async function ipcSent(s: RunningServer, slot: number): Promise<IpcSent> {
  for (let i = 0; i < 20; i++) {
    const a = await postOnFreshConnection(s.apiUrl, "/api/test/ipc-sent", {});
    const body = a.body as IpcSent | undefined;
    if (body?.slot === slot) return body;
  }
  throw new Error(`worker ${slot} did not answer`);
}

const requestsOf = (sent: IpcSent) =>
  Object.fromEntries(REQUEST_TAGS.map((t) => [t, sent.requests[t] ?? 0]));

/** A connected, not yet registered socket on worker `slot`. */
async function socketOn(slot: number, userId: string): Promise<Socket> {
  const token = await signToken(userId);
  for (let i = 0; i < 20; i++) {
    const s = await connect(server.publicUrl, token);
    if (slotOf(s) === slot) return s;
    s.close();
  }
  throw new Error(`no socket landed on worker ${slot}`);
}

async function store(userId: string, n: number, prefix = "m"): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await postFresh(server.apiUrl, "/api/push", {
      userId,
      event: "note",
      payload: { text: `${prefix}${i}` },
      options: { offline: "store" },
    });
    expect(r.body["stored"]).toBe(1);
  }
}

describe("register with nothing stored", () => {
  it("acks without any request to the primary, on either worker; with messages stored it asks", async () => {
    for (const slot of [0, 1]) {
      const socket = await socketOn(slot, `fp-none-${slot}`);
      const before = await ipcSent(server, slot);
      const ack = await emitAck<RegisterAck>(socket, "register", { userId: `fp-none-${slot}` });
      expect(ack).toMatchObject({ ok: true });
      expect(ack.replayed).toBeUndefined();
      const after = await ipcSent(server, slot);
      expect(after.pid).toBe(before.pid);
      expect(requestsOf(after)).toEqual(requestsOf(before));

      // The same observation sees the round trip when there is something to take.
      const userId = `fp-some-${slot}`;
      await store(userId, 2);
      const other = await socketOn(slot, userId);
      const got = record<{ text: string }>(other, "note");
      const beforeTake = await ipcSent(server, slot);
      expect(await emitAck<RegisterAck>(other, "register", { userId })).toMatchObject({
        ok: true,
        replayed: 2,
      });
      await until(() => got.length === 2);
      const afterTake = await ipcSent(server, slot);
      expect(requestsOf(afterTake)["ss:store"]).toBeGreaterThan(
        requestsOf(beforeTake)["ss:store"]!,
      );
    }
  });
});

describe("register with stored messages", () => {
  it("gets them all, in order, with replayed in the ack, on either worker", async () => {
    for (const slot of [0, 1]) {
      const userId = `fp-stored-${slot}`;
      await store(userId, 5);
      const socket = await socketOn(slot, userId);
      const got = record<{ text: string }>(socket, "note");
      const ack = await emitAck<RegisterAck>(socket, "register", { userId });
      expect(ack).toMatchObject({ ok: true, replayed: 5 });
      await until(() => got.length === 5);
      expect(got.map((g) => g.text)).toEqual(["m0", "m1", "m2", "m3", "m4"]);
      // Taken: the next register of the user has nothing and asks nobody.
      const again = await socketOn(slot, userId);
      const before = await ipcSent(server, slot);
      expect((await emitAck<RegisterAck>(again, "register", { userId })).replayed).toBeUndefined();
      expect(requestsOf(await ipcSent(server, slot))).toEqual(requestsOf(before));
    }
  });
});

describe("a push that stores, racing a register", () => {
  it("loses nothing and delivers nothing twice, over many rounds on both workers", async () => {
    const ROUNDS = 40;
    const PUSHES = 4;
    const round = async (r: number) => {
      const userId = `fp-race-${r}`;
      const token = await signToken(userId);
      const seen: number[] = [];
      let registered: Promise<RegisterAck> | undefined;
      // The socket connects and registers while the pushes are under way.
      const socketReady = connect(server.publicUrl, token).then((s) => {
        s.on("note", (p: { i: number }) => seen.push(p.i));
        registered = emitAck<RegisterAck>(s, "register", { userId });
        return s;
      });
      const pushes = Array.from({ length: PUSHES }, async (_, i) => {
        await new Promise((res) => setTimeout(res, i * 3));
        return postFresh(server.apiUrl, "/api/push", {
          userId,
          event: "note",
          payload: { i },
          options: { offline: "store" },
        });
      });
      const answers = await Promise.all(pushes);
      for (const a of answers) expect(a.status).toBe(202);
      await socketReady;
      expect(await registered).toMatchObject({ ok: true });
      await until(() => seen.length >= PUSHES, 10_000).catch(() => {
        throw new Error(`round ${r}: got ${JSON.stringify(seen)} of ${PUSHES}`);
      });
      return seen;
    };
    for (let batch = 0; batch < ROUNDS; batch += 10) {
      const results = await Promise.all(Array.from({ length: 10 }, (_, k) => round(batch + k)));
      // A short while for a duplicate to show up, if one were on its way.
      await new Promise((res) => setTimeout(res, 100));
      for (const seen of results) {
        expect([...seen].sort((a, b) => a - b)).toEqual(
          Array.from({ length: PUSHES }, (_, i) => i),
        );
      }
    }
  });
});

describe("a push sent right after the register ack", () => {
  it("reaches the new socket, for many users registering at once on both workers", async () => {
    const USERS = 40;
    const sockets = await Promise.all(
      Array.from({ length: USERS }, async (_, i) => {
        const userId = `fp-burst-${i}`;
        const { socket, got, ack } = await connectAndRegister(
          server.publicUrl,
          await signToken(userId),
          userId,
          "hello",
        );
        expect(ack.ok).toBe(true);
        // At once, through whichever worker takes the connection.
        const r = await postFresh(server.apiUrl, "/api/push", {
          userId,
          event: "hello",
          payload: i,
        });
        expect(r.status).toBe(202);
        return { socket, got };
      }),
    );
    expect(new Set(sockets.map((s) => slotOf(s.socket))).size).toBe(2);
    await until(() => sockets.every((s) => s.got.length === 1));
    // A marker on every socket: once it is there, no duplicate is on its way.
    const marks = sockets.map((s) => record(s.socket, "mark"));
    for (let i = 0; i < USERS; i++) {
      await postFresh(server.apiUrl, "/api/push", {
        userId: `fp-burst-${i}`,
        event: "mark",
        payload: 1,
      });
    }
    await until(() => marks.every((m) => m.length === 1));
    expect(sockets.map((s) => s.got)).toEqual(sockets.map((_, i) => [i]));
  });
});

describe("a worker started after messages were stored", () => {
  it("knows whose they are: it replays them, and asks nobody for a user with none", async () => {
    await store("fp-restart-a", 3, "a");
    await store("fp-restart-b", 2, "b");
    const crash = await postOnFreshConnection(server.apiUrl, "/api/test/crash", {});
    const { slot, pid } = crash.body as { slot: number; pid: number };
    // Until the replacement is up and ready.
    await until(async () => {
      const a = await postOnFreshConnection(server.apiUrl, "/api/test/ipc-sent", {});
      const b = a.body as IpcSent | undefined;
      return b?.slot === slot && b.pid !== pid;
    }, 20_000);
    await waitReady(server.apiUrl);

    const fresh = await socketOn(slot, "fp-restart-none");
    const before = await ipcSent(server, slot);
    expect(before.pid).not.toBe(pid);
    expect(
      (await emitAck<RegisterAck>(fresh, "register", { userId: "fp-restart-none" })).replayed,
    ).toBeUndefined();
    expect(requestsOf(await ipcSent(server, slot))).toEqual(requestsOf(before));

    for (const [userId, texts] of [
      ["fp-restart-a", ["a0", "a1", "a2"]],
      ["fp-restart-b", ["b0", "b1"]],
    ] as const) {
      const socket = await socketOn(slot, userId);
      const got = record<{ text: string }>(socket, "note");
      const ack = await emitAck<RegisterAck>(socket, "register", { userId });
      expect(ack).toMatchObject({ ok: true, replayed: texts.length });
      await until(() => got.length === texts.length);
      expect(got.map((g) => g.text)).toEqual(texts);
    }
  });
});
