import { afterEach, describe, expect, it } from "vitest";
import { type Client, createClient, type RoomReset } from "../src/client/index.js";
import { signToken } from "./support/fixtures.js";
import { useInProcessServer } from "./support/in-process.js";
import { waitFor } from "./support/wait.js";

// The client's positions in history rooms (src/client/room-positions.ts)
// through the real client and server: what it remembers, the re-join with
// `since` after a dropped connection, and the reset it reports when the
// history does not reach back far enough.

const SIZE = 3;
const server = useInProcessServer({
  env: { HISTORY_ROOMS: "feed:*", HISTORY_SIZE: String(SIZE), HISTORY_TTL_S: "60" },
});

const clients: Client[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

let n = 0;
const fresh = (s: string) => `${s}-${++n}-${Date.now().toString(36)}`;

async function member(room: string) {
  const userId = fresh("ch");
  const token = await signToken(userId, { rooms: ["feed:*"] });
  const client = createClient({
    url: server.publicUrl,
    userId,
    getToken: () => token,
    reconnection: { delayMs: 50, maxDelayMs: 200 },
  });
  clients.push(client);
  const got: number[] = [];
  client.on<number>("msg", (i) => void got.push(i));
  const resets: RoomReset[] = [];
  client.onRoomReset((r) => resets.push(r));
  await waitFor("registered", async () => (client.state === "registered" ? true : undefined));
  await client.joinRoom(room);
  return { client, got, resets };
}
const push = async (room: string, i: number) => {
  const res = await server.api("POST", "/api/push", { room, event: "msg", payload: i });
  expect(res.status).toBe(202);
  return ((await res.json()) as { position: { epoch: string; offset: number } }).position;
};
/** Drops the connection under the client (as a network failure would) and pushes meanwhile. */
async function dropAndPush(c: Client, room: string, payloads: number[]) {
  const down = new Promise<void>((r) => {
    const off = c.onState((s) => {
      if (s.state !== "registered") {
        off();
        r();
      }
    });
  });
  c.socket.io.engine.close();
  await down;
  for (const i of payloads) await push(room, i);
}

describe("history rooms in the client", () => {
  it("remembers the last position, re-joins with it after a drop and gets what it missed, once", async () => {
    const room = fresh("feed:c");
    const { client, got, resets } = await member(room);
    const start = client.roomPosition(room)!;
    expect(start.offset).toBe(0);
    await push(room, 1);
    const p2 = await push(room, 2);
    await waitFor("2 pushes", async () => (got.length === 2 ? true : undefined));
    expect(client.roomPosition(room)).toEqual(p2);

    await dropAndPush(client, room, [3, 4]);
    await waitFor("4 pushes", async () => (got.length === 4 ? true : undefined));
    expect(got).toEqual([1, 2, 3, 4]);
    expect(resets).toEqual([]);
    expect(client.roomPosition(room)).toEqual({ epoch: start.epoch, offset: 4 });
    // Live pushes follow, none twice.
    await push(room, 5);
    await waitFor("5 pushes", async () => (got.length === 5 ? true : undefined));
    expect(got).toEqual([1, 2, 3, 4, 5]);
  });

  it("reports a reset when more was missed than the history keeps, and goes on from the room's position", async () => {
    const room = fresh("feed:r");
    const { client, got, resets } = await member(room);
    await push(room, 1);
    await waitFor("1 push", async () => (got.length === 1 ? true : undefined));
    const missed = Array.from({ length: SIZE + 1 }, (_, i) => i + 2);
    await dropAndPush(client, room, missed);
    await waitFor("a reset", async () => (resets.length === 1 ? true : undefined));
    const now = { epoch: client.roomPosition(room)!.epoch, offset: SIZE + 2 };
    expect(resets).toEqual([{ room, position: now }]);
    expect(got).toEqual([1]);
    expect(client.roomPosition(room)).toEqual(now);
    await push(room, 99);
    await waitFor("the next push", async () => (got.length === 2 ? true : undefined));
    expect(got).toEqual([1, 99]);
  });

  it("forgets a room it left", async () => {
    const room = fresh("feed:l");
    const { client } = await member(room);
    await push(room, 1);
    await waitFor("a position", async () =>
      client.roomPosition(room)?.offset === 1 ? true : undefined,
    );
    await client.leaveRoom(room);
    expect(client.roomPosition(room)).toBeUndefined();
  });
});
