import { describe, expect, it } from "vitest";
import type { RoomPosition } from "../src/shared/events.js";
import { RoomHistory } from "../src/primary/room-history.js";
import { type TestSocket, connectRegistered, emitAck } from "./support/client.js";
import { signToken } from "./support/fixtures.js";
import { useInProcessServer } from "./support/in-process.js";
import { handshake, poll } from "./support/polling.js";
import { waitFor } from "./support/wait.js";

const until = (what: string, ok: () => boolean) =>
  waitFor(what, async () => (ok() ? true : undefined), 5_000);

// History rooms (HISTORY_ROOMS): positions on pushes, and recovery with
// `room:join` `since`, in one process; across workers and hosts see
// test/history-cluster.test.ts.

const SIZE = 5;
const server = useInProcessServer({
  env: { HISTORY_ROOMS: "feed:*,exact", HISTORY_SIZE: String(SIZE), HISTORY_TTL_S: "60" },
});

let n = 0;
const fresh = (name: string) => `${name}-${++n}-${Date.now().toString(36)}`;

async function push(body: unknown) {
  const res = await server.api("POST", "/api/push", body);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A registered socket allowed into every room, recording `msg` with its position. */
async function member(userId = fresh("u")) {
  const socket = await connectRegistered(
    server.publicUrl,
    await signToken(userId, { rooms: ["*"] }),
    userId,
  );
  const got: { payload: unknown; pos: RoomPosition | undefined }[] = [];
  socket.on("msg", (payload: unknown, pos?: RoomPosition) => got.push({ payload, pos }));
  return { socket, got, userId };
}

type JoinAck = {
  ok: boolean;
  recovered?: boolean;
  position?: { epoch: string; offset: number };
  error?: { code: string };
};
const join = (socket: TestSocket, room: string, since?: unknown) =>
  emitAck<JoinAck>(socket, "room:join", since === undefined ? { room } : { room, since });

describe("positions", () => {
  it("a push to a history room answers with its position, and the event gets it as second argument", async () => {
    const room = fresh("feed:a");
    const a = await member();
    const joined = await join(a.socket, room);
    expect(joined).toMatchObject({ ok: true, position: { offset: 0 } });
    const epoch = joined.position!.epoch;
    const r1 = await push({ room, event: "msg", payload: { i: 1 } });
    const r2 = await push({ room, event: "msg", payload: { i: 2 } });
    expect(r1).toMatchObject({ status: 202, body: { position: { epoch, offset: 1 } } });
    expect(r2.body).toMatchObject({ position: { epoch, offset: 2 } });
    await until("a.got.length === 2", () => a.got.length === 2);
    expect(a.got).toEqual([
      { payload: { i: 1 }, pos: { room, epoch, offset: 1 } },
      { payload: { i: 2 }, pos: { room, epoch, offset: 2 } },
    ]);
  });

  it("a push to several rooms answers each history room's position; plain rooms cost nothing", async () => {
    const h = fresh("feed:b");
    const plain = fresh("plain");
    const a = await member();
    await join(a.socket, plain);
    const r = await push({ rooms: [h, plain, "exact"], event: "msg", payload: 1 });
    expect(r.status).toBe(202);
    const positions = r.body.positions as Record<string, { offset: number }>;
    expect(Object.keys(positions).sort()).toEqual(["exact", h].sort());
    expect(positions[h]!.offset).toBe(1);
    await until("a.got.length === 1", () => a.got.length === 1);
    // Only in the plain room: no position.
    expect(a.got[0]).toEqual({ payload: 1, pos: undefined });
    const p = await push({ room: plain, event: "msg", payload: 2 });
    expect(p.body.position).toBeUndefined();
  });

  it("refuses ackTimeoutMs for a history room, and a bad `since`", async () => {
    const r = await push({
      room: fresh("feed:c"),
      event: "msg",
      payload: 1,
      options: { ackTimeoutMs: 100 },
    });
    expect(r.status).toBe(400);
    const a = await member();
    for (const since of [{ epoch: "", offset: 1 }, { epoch: "x", offset: -1 }, 5, { epoch: "x" }]) {
      expect(await join(a.socket, fresh("feed:d"), since)).toMatchObject({
        ok: false,
        error: { code: "INVALID_PAYLOAD" },
      });
    }
  });
});

describe("recovery", () => {
  it("a re-join with `since` gets the missed pushes in order, then live ones, without duplicates", async () => {
    const room = fresh("feed:r");
    const a = await member();
    const { position } = await join(a.socket, room);
    await push({ room, event: "msg", payload: 1 });
    await until("a.got.length === 1", () => a.got.length === 1);
    const last = a.got[0]!.pos!;
    a.socket.disconnect();
    for (const i of [2, 3, 4]) await push({ room, event: "msg", payload: i });

    const b = await member(a.userId);
    const ack = await join(b.socket, room, { epoch: last.epoch, offset: last.offset });
    expect(ack).toMatchObject({
      ok: true,
      recovered: true,
      position: { epoch: position!.epoch, offset: 4 },
    });
    // Delivered before the ack.
    expect(b.got.map((g) => g.payload)).toEqual([2, 3, 4]);
    expect(b.got.map((g) => g.pos!.offset)).toEqual([2, 3, 4]);
    await push({ room, event: "msg", payload: 5 });
    await until("b.got.length === 4", () => b.got.length === 4);
    expect(b.got.map((g) => g.pos!.offset)).toEqual([2, 3, 4, 5]);
  });

  it("paces a history larger than the slow-consumer limit to a polling client that is slow to poll: all of it, no disconnect", async () => {
    const room = fresh("feed:big");
    const userId = fresh("big");
    const a = await member(userId);
    const { position } = await join(a.socket, room);
    a.socket.disconnect();
    // SIZE pushes of 400 kB: 2 MB against the default 1 MiB per socket.
    const chunk = "x".repeat(400_000);
    for (let i = 1; i <= SIZE; i++) await push({ room, event: "msg", payload: `${i}:${chunk}` });

    // A raw long-polling client, so that it can stay away while the replay is written.
    const port = Number(new URL(server.publicUrl).port);
    const sid = await handshake(port);
    const packets: string[] = [];
    const get = async () => {
      const r = await poll(port, { sid });
      if (r.status !== 200) throw new Error(`poll: ${r.status} ${r.error ?? r.body}`);
      packets.push(...r.body!.split("\x1e"));
    };
    const post = async (packet: string) => {
      expect((await poll(port, { sid, method: "POST", body: packet })).status).toBe(200);
    };
    await post(`40${JSON.stringify({ token: await signToken(userId, { rooms: ["*"] }) })}`);
    await get();
    await post(`421["register",${JSON.stringify({ userId })}]`);
    while (!packets.some((p) => p.startsWith("431"))) await get();
    await post(`422["room:join",${JSON.stringify({ room, since: position })}]`);
    // Three slow-consumer sweeps without polling.
    await new Promise((r) => setTimeout(r, 1_000));
    const deadline = Date.now() + 20_000;
    while (!packets.some((p) => p.startsWith("432")) && Date.now() < deadline) await get();
    const ack = packets.find((p) => p.startsWith("432"));
    expect(ack, packets.map((p) => p.slice(0, 40)).join(" | ")).toMatch(/"recovered":true/);
    const got = packets
      .filter((p) => p.startsWith('42["msg"'))
      .map((p) => (JSON.parse(p.slice(2)) as [string, string])[1].split(":")[0]);
    expect(got).toEqual(Array.from({ length: SIZE }, (_, i) => String(i + 1)));
  });

  it("pushes racing the replay come once, after it, in order", async () => {
    const room = fresh("feed:race");
    const a = await member();
    await join(a.socket, room);
    for (let i = 1; i <= 3; i++) await push({ room, event: "msg", payload: i });
    const epoch = (await join(a.socket, room)).position!.epoch;
    const b = await member();
    // Pushes in flight while b recovers from offset 1.
    const pushing = Promise.all([4, 5, 6, 7].map((i) => push({ room, event: "msg", payload: i })));
    const ack = await join(b.socket, room, { epoch, offset: 1 });
    await pushing;
    expect(ack.recovered).toBe(true);
    await until("b.got.length >= 6", () => b.got.length >= 6);
    await new Promise((r) => setTimeout(r, 50));
    expect(b.got.map((g) => g.pos!.offset)).toEqual([2, 3, 4, 5, 6, 7]);
  });

  it("past HISTORY_SIZE, with another epoch, or ahead of the counter: recovered false with the position now", async () => {
    const room = fresh("feed:old");
    const a = await member();
    const epoch = (await join(a.socket, room)).position!.epoch;
    for (let i = 1; i <= SIZE + 2; i++) await push({ room, event: "msg", payload: i });
    const b = await member();
    const now = { epoch, offset: SIZE + 2 };
    expect(await join(b.socket, room, { epoch, offset: 1 })).toMatchObject({
      ok: true,
      recovered: false,
      position: now,
    });
    // Exactly as far back as it reaches.
    expect(await join(b.socket, room, { epoch, offset: 2 })).toMatchObject({ recovered: true });
    expect(await join(b.socket, room, { epoch: "other", offset: 6 })).toMatchObject({
      recovered: false,
      position: now,
    });
    expect(await join(b.socket, room, { epoch, offset: SIZE + 5 })).toMatchObject({
      recovered: false,
    });
    const text = await (await server.api("GET", "/metrics")).text();
    expect(text).toMatch(/socket_server_history_recoveries_total\{outcome="reset"\} [1-9]/);
    expect(text).toMatch(/socket_server_history_pushes_total\{store="host"\} [1-9]/);
  });
});

describe("RoomHistory (the primary's store)", () => {
  it("expires pushes after the TTL and keeps the counter", () => {
    let now = 1_000;
    const h = new RoomHistory({ size: 3, ttlMs: 100 }, () => now);
    const [p1] = h.append({ rooms: ["r"], event: "e", payloadJson: "1" });
    expect(p1).toMatchObject({ offset: 1 });
    now += 50;
    h.append({ rooms: ["r"], event: "e", payloadJson: "2" });
    expect(h.read("r", p1)).toMatchObject({ recovered: true, entries: [{ offset: 2 }] });
    expect(h.read("r", { epoch: p1!.epoch, offset: 0 })).toMatchObject({ recovered: true });
    now += 60;
    // Offset 1 is older than the TTL now, offset 2 is not.
    expect(h.read("r", { epoch: p1!.epoch, offset: 0 })).toMatchObject({ recovered: false });
    expect(h.read("r", p1)).toMatchObject({ recovered: true });
    now += 1_000;
    h.sweep();
    expect(h.read("r", p1)).toMatchObject({ recovered: false, position: { offset: 2 } });
  });
});
