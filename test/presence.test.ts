import { beforeAll, describe, expect, it } from "vitest";
import { createClient } from "../src/client/index.js";
import { startBackend, type TestBackend } from "./support/backend.js";
import { connect, emitAck, type TestSocket } from "./support/client.js";
import {
  type PresenceNotice,
  presenceNotices,
  record,
  slotOf,
} from "./support/delivery-helpers.js";
import { signToken } from "./support/fixtures.js";
import { useServer } from "./support/server.js";
import { waitFor } from "./support/wait.js";

// Presence and signals in rooms on one host: a real cluster of two workers,
// where the primary keeps presence (no Redis). Two tabs of a user on two
// workers are one presence; a reload within PRESENCE_LEAVE_DELAY_MS is no
// leave. Signals go from a member to the room's other sockets and never to
// the backend. (Two hosts on Redis: presence-multihost.test.ts.)

const DELAY_MS = 700;
let backend: TestBackend;
// Filled in before the server starts (useServer's beforeAll runs after this one).
const env: Record<string, string> = {
  PRESENCE_ROOMS: "live:*,lobby",
  SIGNAL_ROOMS: "live:*",
  PRESENCE_LEAVE_DELAY_MS: String(DELAY_MS),
  SIGNAL_RATE_PER_SECOND: "2",
  SIGNAL_RATE_BURST: "4",
  SIGNAL_MAX_BYTES: "64",
};
beforeAll(async () => {
  backend = await startBackend();
  env.BACKEND_URL = backend.url;
  return () => backend.stop();
});
const server = useServer({ workers: 2, env });

const tokenFor = (u: string) => signToken(u, { rooms: ["live:*", "lobby", "plain"] });

/** A registered socket of `userId` on worker `slot` (connects until one lands there). */
async function tabOn(slot: number, userId: string): Promise<TestSocket> {
  const token = await tokenFor(userId);
  for (let i = 0; i < 30; i++) {
    const s = await connect(server.publicUrl, token);
    if (slotOf(s) !== slot) {
      s.close();
      continue;
    }
    expect(await emitAck(s, "register", { userId })).toMatchObject({ ok: true });
    return s;
  }
  throw new Error(`no socket landed on worker ${slot}`);
}

async function join(s: TestSocket, room: string): Promise<void> {
  expect(await emitAck(s, "room:join", { room })).toMatchObject({ ok: true });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = (what: string, check: () => boolean, ms = 5_000) =>
  waitFor(what, async () => (check() ? true : undefined), ms);

const names = (list: PresenceNotice[]) => list.map((n) => n.userId);

describe("presence across two workers", () => {
  it("two tabs are one presence: one join, no leave for the first tab, a leave after the delay for the last", async () => {
    const room = "live:tabs";
    const watcher = await tabOn(0, "p-watch");
    await join(watcher, room);
    const joins = presenceNotices(watcher, "presence:join", "p-watch");
    const leaves = presenceNotices(watcher, "presence:leave", "p-watch");

    const tab1 = await tabOn(0, "p-ann");
    await join(tab1, room);
    await until("ann's join", () => joins.length === 1);
    expect(joins[0]).toEqual({ room, userId: "p-ann" });
    const tab2 = await tabOn(1, "p-ann");
    await join(tab2, room);
    // A later join of someone else is the marker: nothing for ann's second tab came before it.
    const other = await tabOn(1, "p-bob");
    await join(other, room);
    await until("bob's join", () => joins.length === 2);
    expect(names(joins)).toEqual(["p-ann", "p-bob"]);
    expect(await emitAck(watcher, "presence:list", { room })).toEqual({
      ok: true,
      room,
      users: ["p-ann", "p-bob", "p-watch"],
    });

    tab1.close();
    await sleep(DELAY_MS + 400);
    expect(leaves).toEqual([]);

    const closedAt = Date.now();
    tab2.close();
    await until("ann's leave", () => leaves.length === 1);
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(DELAY_MS - 50);
    expect(leaves).toEqual([{ room, userId: "p-ann" }]);
    expect(await emitAck(watcher, "presence:list", { room })).toMatchObject({
      users: ["p-bob", "p-watch"],
    });
  });

  it("a reload within the delay, onto the other worker, is no leave and no second join", async () => {
    const room = "live:reload";
    const watcher = await tabOn(1, "r-watch");
    await join(watcher, room);
    const joins = presenceNotices(watcher, "presence:join", "r-watch");
    const leaves = presenceNotices(watcher, "presence:leave", "r-watch");
    const before = await tabOn(0, "r-cat");
    await join(before, room);
    await until("cat's join", () => joins.length === 1);
    before.close();
    const after = await tabOn(1, "r-cat");
    await join(after, room);
    await sleep(DELAY_MS + 400);
    expect(names(joins)).toEqual(["r-cat"]);
    expect(leaves).toEqual([]);
    expect(await emitAck(watcher, "presence:list", { room })).toMatchObject({
      users: ["r-cat", "r-watch"],
    });
  });

  it("the backend's PUT and DELETE of a member enter and leave too", async () => {
    const room = "lobby";
    const watcher = await tabOn(0, "b-watch");
    await join(watcher, room);
    const joins = presenceNotices(watcher, "presence:join", "b-watch");
    const leaves = presenceNotices(watcher, "presence:leave", "b-watch");
    await tabOn(1, "b-dan");
    expect((await server.api("PUT", `/api/rooms/${room}/members/b-dan`)).status).toBe(200);
    await until("dan's join", () => joins.length === 1);
    expect(joins).toEqual([{ room, userId: "b-dan" }]);
    expect((await server.api("DELETE", `/api/rooms/${room}/members/b-dan`)).status).toBe(200);
    await until("dan's leave", () => leaves.length === 1);
    expect(leaves).toEqual([{ room, userId: "b-dan" }]);
  });

  it("a crashed worker's users leave after the delay; the other worker's stay", async () => {
    const room = "live:crash";
    const watcher = await tabOn(0, "c-watch");
    await join(watcher, room);
    const joins = presenceNotices(watcher, "presence:join", "c-watch");
    const leaves = presenceNotices(watcher, "presence:leave", "c-watch");
    await join(await tabOn(1, "c-gone"), room);
    await join(await tabOn(0, "c-both"), room);
    await join(await tabOn(1, "c-both"), room);
    await until("two joins", () => joins.length === 2);
    const status = (await (await server.api("GET", "/api/status")).json()) as {
      workers: { worker: number; pid: number }[];
    };
    const pid = status.workers.find((w) => w.worker === 1)!.pid;
    const killedAt = Date.now();
    process.kill(pid, "SIGKILL");
    await until("c-gone's leave", () => leaves.length === 1);
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(DELAY_MS - 50);
    expect(leaves).toEqual([{ room, userId: "c-gone" }]);
    expect(await emitAck(watcher, "presence:list", { room })).toMatchObject({
      users: ["c-both", "c-watch"],
    });
    // The primary restarts it; later tests place sockets on it again.
    await server.waitForOutput(/worker exited unexpectedly; restarting/);
    await waitFor(
      "both workers ready again",
      async () => ((await fetch(`${server.apiUrl}/ready`)).status === 200 ? true : undefined),
      15_000,
    );
  });

  it("presence:list is for members of presence rooms only", async () => {
    const s = await tabOn(0, "l-eve");
    await join(s, "plain");
    const refused = (room: unknown) =>
      emitAck<{ ok: boolean; error?: { code: string } }>(s, "presence:list", { room });
    expect(await refused("live:elsewhere")).toMatchObject({ error: { code: "FORBIDDEN" } });
    expect(await refused("plain")).toMatchObject({ error: { code: "FORBIDDEN" } });
    expect(await refused("user:l-eve")).toMatchObject({ error: { code: "FORBIDDEN" } });
    expect(await refused(42)).toMatchObject({ error: { code: "INVALID_PAYLOAD" } });
    const early = await connect(server.publicUrl, await tokenFor("l-early"));
    expect(await emitAck(early, "presence:list", { room: "lobby" })).toMatchObject({
      error: { code: "NOT_REGISTERED" },
    });
  });
});

describe("signals", () => {
  it("reach the room's other sockets on both workers, not the sender, never the backend", async () => {
    const room = "live:typing";
    const sender = await tabOn(0, "s-ann");
    const senderTab = await tabOn(1, "s-ann");
    const peer = await tabOn(1, "s-bob");
    const outsider = await tabOn(0, "s-cat");
    for (const s of [sender, senderTab, peer]) await join(s, room);
    const got = [sender, senderTab, peer, outsider].map((s) => record(s, "room:signal"));

    // Signals are volatile (at most once): one that reaches a socket in the
    // same tick as another packet to it (here the presence notices of these
    // joins, relayed through the primary) is dropped for that socket, as
    // Socket.IO drops any volatile packet while the transport is writing. On
    // a loaded machine that happens, so the sender repeats the signal, as a
    // typing indicator does, until both other sockets have one.
    const signal = { room, name: "typing", data: { on: true }, from: "s-ann" };
    for (let sent = 0; !(got[1]!.length > 0 && got[2]!.length > 0); sent++) {
      expect(sent).toBeLessThan(5);
      expect(
        await emitAck(sender, "room:signal", { room, name: "typing", data: { on: true } }),
      ).toEqual({ ok: true });
      await until(
        "the signal on both other sockets",
        () => got[1]!.length * got[2]!.length > 0,
        1_000,
      ).catch(() => {});
    }
    for (const list of [got[1]!, got[2]!]) for (const g of list) expect(g).toEqual(signal);
    // A forwarded event after it: once the backend has it, a forwarded signal would have come first.
    expect(await emitAck(peer, "probe", { n: 1 })).toMatchObject({ ok: true });
    expect(backend.requests.map((r) => r.body?.event)).toEqual(["probe"]);
    expect(got[0]).toEqual([]);
    expect(got[3]).toEqual([]);
  });

  it("are refused to non-members, in other rooms, too large, badly named, and past the rate", async () => {
    const s = await tabOn(1, "x-dan");
    await join(s, "live:x");
    await join(s, "lobby");
    const code = async (req: unknown) =>
      (await emitAck<{ error?: { code: string } }>(s, "room:signal", req)).error?.code;
    expect(await code({ room: "live:other", name: "typing" })).toBe("FORBIDDEN");
    expect(await code({ room: "lobby", name: "typing" })).toBe("FORBIDDEN");
    expect(await code({ room: "live:x", name: "bad name" })).toBe("INVALID_PAYLOAD");
    expect(await code({ room: "live:x", name: "typing", data: "x".repeat(100) })).toBe(
      "PAYLOAD_TOO_LARGE",
    );

    // A fresh socket: the burst (4), then RATE_LIMITED.
    const fresh = await tabOn(0, "x-dan");
    await join(fresh, "live:x");
    const acks = [];
    for (let i = 0; i < 6; i++) {
      acks.push(await emitAck(fresh, "room:signal", { room: "live:x", name: "t" }));
    }
    expect(acks.slice(0, 4)).toEqual(Array(4).fill({ ok: true }));
    expect(acks[5]).toMatchObject({ ok: false, error: { code: "RATE_LIMITED" } });
    // Their own bucket: events for the backend still go through.
    expect(await emitAck(fresh, "probe", { n: 2 })).toMatchObject({ ok: true });
  });

  it("are counted, and so are presence notices, in /metrics", async () => {
    const text = await (await server.api("GET", "/metrics")).text();
    expect(text).toMatch(/socket_server_signal_messages_total\{outcome="relayed"\} [1-9]/);
    expect(text).toMatch(/socket_server_signal_messages_total\{outcome="rate_limited"\} [1-9]/);
    expect(text).toMatch(/socket_server_signal_messages_total\{outcome="forbidden"\} [1-9]/);
    expect(text).toMatch(/socket_server_presence_notices_total\{kind="join"\} [1-9]/);
    expect(text).toMatch(/socket_server_presence_notices_total\{kind="leave"\} [1-9]/);
  });
});

describe("the client library", () => {
  it("lists presence, sends signals and hands the notices to on()", async () => {
    const room = "live:client";
    const token = await tokenFor("k-lib");
    const client = createClient({
      url: server.publicUrl,
      userId: "k-lib",
      transports: ["websocket"],
      getToken: () => token,
    });
    try {
      const joins = record<PresenceNotice>(client.socket, "presence:join");
      const signals: unknown[] = [];
      client.on("room:signal", (s) => void signals.push(s));
      const seenByAny: string[] = [];
      client.onAny((event) => void seenByAny.push(event));
      await client.joinRoom(room);
      expect(await client.presence(room)).toEqual(["k-lib"]);

      const peer = await tabOn(1, "k-peer");
      await join(peer, room);
      await until("k-peer's join", () => joins.some((j) => j.userId === "k-peer"));
      expect(await client.presence(room)).toEqual(["k-lib", "k-peer"]);
      await client.signal(room, "typing", { on: true });
      expect(await emitAck(peer, "room:signal", { room, name: "typing" })).toEqual({ ok: true });
      await until("the peer's signal", () => signals.length === 1);
      expect(signals).toEqual([{ room, name: "typing", from: "k-peer" }]);
      // Not pushes: onAny leaves the server's own events out.
      expect(seenByAny).toEqual([]);
      await expect(client.signal("live:elsewhere", "typing")).rejects.toMatchObject({
        code: "FORBIDDEN",
      });
    } finally {
      client.close();
    }
  });
});
