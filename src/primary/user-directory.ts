import { type DirectDelivery, hostClock } from "../shared/ipc.js";
import type { IpcHub } from "./ipc-hub.js";
import type { Supervisor } from "./supervisor.js";

/**
 * Which workers hold a registered socket of each user, so that a push to a
 * user travels only to those workers. (The cluster adapter relays every
 * broadcast through the primary to every other worker, whoever it is for.)
 *
 * Workers report when a user's room appears or disappears on them
 * (`ss:users`); a worker that exits is forgotten at once. A worker that
 * received a push for users it does not hold itself sends it here
 * (`ss:route`, batched) and this forwards each item only to the workers
 * holding its users, one `ss:deliver` per worker.
 *
 * Nobody waits for `ss:users` to be applied, so a push sent after a
 * register ack may reach this process (from another worker's channel)
 * before the news that the user is on that worker. Each change and each
 * push carry the host's monotonic time (`hostClock`): the pushes routed in
 * the last RECENT_MS are kept per user, and a user's arrival on a worker
 * sends it those emitted after its join that did not go there. A push sent
 * after the ack was emitted after the join, so it is among them unless the
 * news took longer than RECENT_MS to arrive; the register ack used to wait
 * for the directory at most 1 s and then went on regardless.
 */

/** How long routed pushes are kept for users whose arrival is still on its way. */
export const RECENT_MS = 5_000;

interface Routed {
  /** Routing order, across users. */
  seq: number;
  item: DirectDelivery;
  /** `hostClock()` when it was emitted (0 when the worker sent no time: never caught up). */
  at: number;
  from: number;
  /** Workers it went to for this user. */
  sentTo: number[];
}

export function attachUserDirectory(deps: {
  ipc: Pick<IpcHub, "on" | "send">;
  sup: Pick<Supervisor, "on">;
}): void {
  const { ipc } = deps;
  // One slot in the common case (a number), several as a Set.
  const where = new Map<string, number | Set<number>>();

  const add = (userId: string, slot: number) => {
    const cur = where.get(userId);
    if (cur === undefined) where.set(userId, slot);
    else if (typeof cur === "number") {
      if (cur !== slot) where.set(userId, new Set([cur, slot]));
    } else cur.add(slot);
  };
  const remove = (userId: string, slot: number) => {
    const cur = where.get(userId);
    if (cur === undefined) return;
    if (typeof cur === "number") {
      if (cur === slot) where.delete(userId);
    } else {
      cur.delete(slot);
      if (cur.size === 1) where.set(userId, cur.values().next().value as number);
    }
  };
  const slotsOf = (userId: string): number[] => {
    const cur = where.get(userId);
    if (cur === undefined) return [];
    return typeof cur === "number" ? [cur] : [...cur];
  };

  // Pushes routed lately, per user, oldest first; trimmed by the timer below.
  const recent = new Map<string, Routed[]>();
  let seq = 0;
  const remember = (userId: string, r: Routed) => {
    const list = recent.get(userId);
    if (list) list.push(r);
    else recent.set(userId, [r]);
  };
  const trim = setInterval(() => {
    const before = hostClock() - RECENT_MS * 1_000;
    for (const [userId, list] of recent) {
      let n = 0;
      while (n < list.length && list[n]!.at < before) n++;
      if (n === list.length) recent.delete(userId);
      else if (n > 0) list.splice(0, n);
    }
  }, 1_000);
  trim.unref();

  function route(from: number, items: DirectDelivery[]): void {
    const perSlot = new Map<number, DirectDelivery[]>();
    for (const item of items) {
      seq += 1;
      const bySlot = new Map<number, string[]>();
      for (const userId of item.users) {
        const slots = slotsOf(userId);
        remember(userId, { seq, item, at: item.at ?? 0, from, sentTo: slots });
        for (const slot of slots) {
          if (slot === from) continue;
          const list = bySlot.get(slot);
          if (list) list.push(userId);
          else bySlot.set(slot, [userId]);
        }
      }
      for (const [slot, users] of bySlot) {
        const out = perSlot.get(slot);
        const part = users.length === item.users.length ? item : { ...item, users };
        if (out) out.push(part);
        else perSlot.set(slot, [part]);
      }
    }
    for (const [slot, out] of perSlot) ipc.send(slot, { t: "ss:deliver", items: out });
  }

  /** Pushes for users who arrived on `slot` emitted after their join that did not go there. */
  function catchUp(slot: number, arrivals: [userId: string, at: number][]): void {
    const due = new Map<number, { item: DirectDelivery; users: string[] }>();
    for (const [userId, joinedAt] of arrivals) {
      for (const r of recent.get(userId) ?? []) {
        if (r.at <= joinedAt || r.from === slot || r.sentTo.includes(slot)) continue;
        r.sentTo.push(slot);
        const d = due.get(r.seq);
        if (d) d.users.push(userId);
        else due.set(r.seq, { item: r.item, users: [userId] });
      }
    }
    if (due.size === 0) return;
    // In the order they were routed.
    const items = [...due]
      .sort((a, b) => a[0] - b[0])
      .map(([, { item, users }]) =>
        users.length === item.users.length ? item : { ...item, users },
      );
    ipc.send(slot, { t: "ss:deliver", items });
  }

  ipc.on("ss:users", (slot, { changes }) => {
    const arrivals: [string, number][] = [];
    for (const [userId, present, at] of changes) {
      if (present) {
        add(userId, slot);
        arrivals.push([userId, at]);
      } else remove(userId, slot);
    }
    if (arrivals.length > 0 && recent.size > 0) catchUp(slot, arrivals);
  });
  ipc.on("ss:route", (slot, { items }) => {
    route(slot, items);
    // After the ss:deliver messages: the worker's API answers once it hears this (direct-push.ts).
    ipc.send(slot, { t: "ss:routed" });
  });
  deps.sup.on("exit", (slot) => {
    for (const userId of [...where.keys()]) remove(userId, slot);
  });
}
