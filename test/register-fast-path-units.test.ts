import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { OfflineStore } from "../src/primary/offline-store.js";
import { attachUserDirectory } from "../src/primary/user-directory.js";
import type { DirectDelivery, PrimaryMessage, StoredMessage } from "../src/shared/ipc.js";

// Pure units behind a register that does not ask the primary: the offline
// store reports whose queues appear and go, and the user directory catches
// a worker up on pushes emitted after a user joined there. The forked
// cluster is exercised in register-fast-path.test.ts.

const msg = (id: string, now = Date.now(), ttlMs = 60_000): StoredMessage => ({
  id,
  event: "e",
  payloadJson: `"${id}"`,
  storedAt: now,
  expiresAt: now + ttlMs,
});

const limits = { maxPerUser: 3, maxTotal: 50, maxTotalBytes: 10_000, leaseTimeoutMs: 60_000 };

function watched(now?: () => number) {
  const seen: [string, boolean][][] = [];
  const store = new OfflineStore(limits, {
    ...(now ? { now } : {}),
    usersChanged: (c) => seen.push(c),
  });
  return { store, seen };
}

describe("OfflineStore reports whose queues appear and go", () => {
  it("once per operation, in order: stored, taken, given back, confirmed", () => {
    const { store, seen } = watched();
    store.put(["u", "v"], msg("a"));
    store.put(["u"], msg("b")); // u's queue already there: nothing new
    const t = store.take("u", 0);
    store.restore(t.leaseId!, 1); // one written, one back in the queue
    const t2 = store.take("u", 0);
    store.confirm(t2.leaseId!);
    expect(seen).toEqual([
      [
        ["u", true],
        ["v", true],
      ],
      [["u", false]],
      [["u", true]],
      [["u", false]],
    ]);
    expect(store.users()).toEqual(["v"]);
  });

  it("a dead worker's leases and expired queues", () => {
    let t = 1_000_000;
    const { store, seen } = watched(() => t);
    store.put(["u"], msg("a", t));
    store.put(["w"], msg("b", t, 10));
    store.take("u", 7);
    seen.length = 0;
    expect(store.releaseOwner(7)).toBe(1);
    t += 100;
    expect(store.sweep()).toBe(1);
    expect(seen).toEqual([[["u", true]], [["w", false]]]);
    expect(store.users()).toEqual(["u"]);
  });

  it("says nothing when no queue appears or goes", () => {
    const { store, seen } = watched();
    store.take("nobody", 0);
    store.put(["u"], msg("a"));
    seen.length = 0;
    store.put(["u"], msg("b"));
    store.sweep();
    expect(seen).toEqual([]);
  });
});

/** The directory with a stand-in hub: what it sends each slot. */
function directory() {
  const hub = new EventEmitter();
  const sup = new EventEmitter();
  const sent: { slot: number; msg: PrimaryMessage }[] = [];
  attachUserDirectory({
    ipc: {
      on: ((tag: string, handler: (slot: number, msg: unknown) => void) => {
        hub.on(tag, handler);
        return () => hub.off(tag, handler);
      }) as never,
      send: (slot, msg) => {
        sent.push({ slot, msg });
        return true;
      },
    },
    sup: sup as never,
  });
  const users = (slot: number, changes: [string, boolean, number][]) =>
    hub.emit("ss:users", slot, { t: "ss:users", changes });
  const route = (slot: number, items: DirectDelivery[]) =>
    hub.emit("ss:route", slot, { t: "ss:route", items });
  const delivered = (slot: number) =>
    sent.flatMap((s) =>
      s.slot === slot && s.msg.t === "ss:deliver"
        ? s.msg.items.map((i) => `${i.payload}:${i.users.join("+")}`)
        : [],
    );
  return { users, route, delivered };
}

const push = (payload: string, users: string[], at: number): DirectDelivery => ({
  users,
  event: "e",
  payload,
  at,
});

describe("the user directory, told of arrivals without anyone waiting", () => {
  it("sends a worker the pushes emitted after its user's join that went elsewhere, in order", () => {
    const d = directory();
    d.users(0, [["u", true, 100]]);
    // u joins worker 1 at 200; the news comes after these pushes.
    d.route(2, [push("before", ["u"], 150)]);
    d.route(2, [push("after-1", ["u", "v"], 250)]);
    d.route(1, [push("from-1", ["u"], 260)]); // emitted on worker 1 itself
    d.route(2, [push("after-2", ["u"], 270)]);
    expect(d.delivered(1)).toEqual([]);
    d.users(1, [["u", true, 200]]);
    expect(d.delivered(1)).toEqual(["after-1:u", "after-2:u"]);
    // Worker 0 had u all along: it got each push once, as routed.
    expect(d.delivered(0)).toEqual(["before:u", "after-1:u", "from-1:u", "after-2:u"]);
    // Known from now: routed as usual, and nothing is sent twice.
    d.route(2, [push("later", ["u"], 300)]);
    d.users(1, [
      ["u", false, 310],
      ["v", true, 100],
    ]);
    expect(d.delivered(1)).toEqual(["after-1:u", "after-2:u", "later:u", "after-1:v"]);
  });

  it("keeps the routed order for several users arriving in one message", () => {
    const d = directory();
    d.route(0, [push("p1", ["a"], 10)]);
    d.route(0, [push("p2", ["b"], 11)]);
    d.route(0, [push("p3", ["a", "b"], 12)]);
    d.users(1, [
      ["b", true, 5],
      ["a", true, 5],
    ]);
    expect(d.delivered(1)).toEqual(["p1:a", "p2:b", "p3:a+b"]);
  });
});
