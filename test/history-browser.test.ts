import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser } from "./support/browser.js";
import { signToken, TEST_API_KEY } from "./support/fixtures.js";
import { type RunningServer, startServer } from "./support/server.js";
import { waitFor } from "./support/wait.js";

// History rooms under a worker crash, with the real browser client in
// headless Chromium: clients on both workers of a forked cluster are in one
// history room while pushes keep coming through the API; one worker gets
// kill -9. Its clients reconnect and re-join with `since` by themselves;
// every client must end with every push exactly once, in offset order, and
// no room reset (the history is large enough to cover the outage).

const ROOM = "feed:crash";
const PAGES = 2;
const CLIENTS_PER_PAGE = 3; // long polls of a page share Chromium's 6 connections per host

let server: RunningServer;
let browser: Browser;

beforeAll(async () => {
  [server, browser] = await Promise.all([
    startServer({
      workers: 2,
      env: { HISTORY_ROOMS: "feed:*", HISTORY_SIZE: "1000", HISTORY_TTL_S: "60" },
    }),
    launchBrowser(),
  ]);
}, 60_000);
afterAll(async () => {
  await browser?.close();
  expect(await server?.stop()).toBe(0);
});

/** What a page's clients saw: per client, its worker slot(s) and every `msg` with its position. */
interface Seen {
  userId: string;
  slots: number[];
  msgs: { seq: number; epoch: string; offset: number }[];
  resets: unknown[];
  states: string[];
}

/** Opens a page on the server's origin whose clients (the real /client.js) join ROOM. */
async function openClients(users: { userId: string; token: string }[]): Promise<Page> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // Any page of the server's origin will do: the client connects to its origin.
  await page.goto(`${server.publicUrl}/client.js`);
  // (A module script: vitest would rewrite an import() inside page.evaluate.)
  await page.addScriptTag({
    type: "module",
    content: 'import { createClient } from "/client.js"; globalThis.createClient = createClient;',
  });
  await page.waitForFunction(() => "createClient" in globalThis);
  await page.evaluate(
    async ({ users, room }) => {
      const { createClient } = globalThis as unknown as typeof import("../src/client/index.js");
      const seen: Seen[] = [];
      (globalThis as unknown as { seen: Seen[] }).seen = seen;
      await Promise.all(
        users.map(async ({ userId, token }) => {
          const s: Seen = { userId, slots: [], msgs: [], resets: [], states: [] };
          seen.push(s);
          const client = createClient({
            userId,
            getToken: () => token,
            reconnection: { delayMs: 100, maxDelayMs: 500 },
          });
          client.socket.io.on("open", () => {
            const id = (client.socket.io.engine as unknown as { id: string }).id;
            s.slots.push(Number.parseInt(id.split("_")[0]!, 36));
          });
          client.socket.on(
            "msg",
            (payload: { seq: number }, pos: { epoch: string; offset: number }) =>
              s.msgs.push({ seq: payload.seq, epoch: pos.epoch, offset: pos.offset }),
          );
          client.onRoomReset((r) => s.resets.push(r));
          await new Promise<void>((resolve) =>
            client.onState((c) => {
              s.states.push(c.state);
              if (c.state === "registered") resolve();
            }),
          );
          await client.joinRoom(room);
        }),
      );
    },
    { users, room: ROOM },
  );
  expect(errors).toEqual([]);
  return page;
}

const seenOn = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as { seen: Seen[] }).seen);

async function workerPid(slot: number): Promise<number> {
  const st = (await (await server.api("GET", "/api/status")).json()) as {
    workers: { worker: number; pid: number }[];
  };
  return st.workers.find((w) => w.worker === slot)!.pid;
}

describe("history rooms in the browser client under a worker crash", () => {
  it("kill -9 of a worker while pushes flow: every client gets every push once, in order, without a reset", async () => {
    const pages: Page[] = [];
    const all = async () => (await Promise.all(pages.map(seenOn))).flat();
    // Each worker accepts its own connections (the kernel spreads them), so
    // now and then every client of the first pages lands on one worker:
    // another page then, until both workers hold some.
    for (let p = 0; p < PAGES || new Set((await all()).map((s) => s.slots[0])).size < 2; p++) {
      expect(p).toBeLessThan(PAGES + 4);
      const users = await Promise.all(
        Array.from({ length: CLIENTS_PER_PAGE }, async (_, i) => {
          const userId = `hb-${p}-${i}`;
          return { userId, token: await signToken(userId, { rooms: ["feed:*"] }) };
        }),
      );
      pages.push(await openClients(users));
    }
    const before = await all();
    const slots = new Set(before.map((s) => s.slots[0]));
    expect([...slots].sort()).toEqual([0, 1]);
    const victimSlot = before[0]!.slots[0]!;
    const victims = before.filter((s) => s.slots[0] === victimSlot).map((s) => s.userId);

    // Pushes every 25 ms per loop, each on a new connection (so both workers take
    // some: their offsets interleave), until told to stop.
    const answered = new Map<number, { status: number; offset?: number }>();
    let failedOnWire = 0;
    let seq = 0;
    let pushing = true;
    // Two loops: pushes overlap, and a re-join's read often races a frame in flight.
    const pushLoop = async () => {
      while (pushing) {
        const i = ++seq;
        try {
          const res = await fetch(`${server.apiUrl}/api/push`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${TEST_API_KEY}`,
              "content-type": "application/json",
              connection: "close",
            },
            body: JSON.stringify({ room: ROOM, event: "msg", payload: { seq: i } }),
            signal: AbortSignal.timeout(5_000),
          });
          const body = (await res.json()) as { position?: { offset: number } };
          answered.set(i, { status: res.status, offset: body.position?.offset });
        } catch {
          // Handed to the worker as it died: it may or may not have been appended.
          failedOnWire += 1;
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    const pushers = Promise.all([pushLoop(), pushLoop()]);

    await waitFor("30 pushes", async () => (seq >= 30 ? true : undefined));
    const pid = await workerPid(victimSlot);
    process.kill(pid, "SIGKILL");
    // The victims reconnect (to the other worker or the replacement) and re-register.
    await waitFor(
      "the victims to be registered again",
      async () => {
        const now = await all();
        const back = now.filter(
          (s) =>
            victims.includes(s.userId) && s.states.at(-1) === "registered" && s.slots.length > 1,
        );
        return back.length === victims.length ? true : undefined;
      },
      20_000,
    );
    const upTo = seq + 30;
    await waitFor("30 more pushes", async () => (seq >= upTo ? true : undefined));
    pushing = false;
    await pushers;

    const accepted = [...answered].filter(([, a]) => a.status === 202).map(([i]) => i);
    // Settled: every client has every accepted push (bounded).
    const after = await waitFor(
      "every client to have every accepted push",
      async () => {
        const now = await all();
        const complete = now.every((s) => {
          const got = new Set(s.msgs.map((m) => m.seq));
          return accepted.every((i) => got.has(i));
        });
        return complete ? now : undefined;
      },
      10_000,
    ).catch(async (err: Error) => {
      const now = await all();
      const missing = now.map((s) => ({
        userId: s.userId,
        missing: accepted.filter((i) => !s.msgs.some((m) => m.seq === i)),
      }));
      throw new Error(`${err.message}: ${JSON.stringify(missing)}`);
    });

    for (const s of after) {
      expect(s.resets, s.userId).toEqual([]);
      const seqs = s.msgs.map((m) => m.seq);
      expect(new Set(seqs).size, `${s.userId} got a push twice: ${seqs.join(",")}`).toBe(
        seqs.length,
      );
      const offsets = s.msgs.map((m) => m.offset);
      expect(offsets, `${s.userId} out of offset order`).toEqual(
        [...offsets].sort((a, b) => a - b),
      );
      expect(new Set(s.msgs.map((m) => m.epoch)).size).toBe(1);
      // The offset each client saw is the one the API answered for that push.
      for (const m of s.msgs) {
        const a = answered.get(m.seq);
        if (a?.status === 202) expect(a.offset, `seq ${m.seq}`).toBe(m.offset);
      }
    }
    expect(
      after
        .filter((s) => s.slots.length > 1)
        .map((s) => s.userId)
        .sort(),
    ).toEqual([...victims].sort());
    console.log(
      `[figures] history rooms, kill -9 of worker ${victimSlot}: ${accepted.length} pushes accepted, ` +
        `${failedOnWire} failed on the wire, ${[...answered.values()].filter((a) => a.status !== 202).length} refused; ` +
        `${victims.length}/${after.length} clients reconnected, each got every push once, in order`,
    );
    await Promise.all(pages.map((p) => p.close()));
  }, 90_000);
});
