import type { DirectDelivery } from "../shared/ipc.js";
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
 */

export function attachUserDirectory(deps: {
  ipc: Pick<IpcHub, "on" | "answer" | "send">;
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

  function route(from: number, items: DirectDelivery[]): void {
    const perSlot = new Map<number, DirectDelivery[]>();
    for (const item of items) {
      const bySlot = new Map<number, string[]>();
      for (const userId of item.users) {
        for (const slot of slotsOf(userId)) {
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

  // Answered once applied: a worker may wait for it before a register ack.
  ipc.answer("ss:users", (slot, { changes }) => {
    for (const [userId, present] of changes) {
      if (present) add(userId, slot);
      else remove(userId, slot);
    }
    return null;
  });
  ipc.on("ss:route", (slot, { items }) => route(slot, items));
  deps.sup.on("exit", (slot) => {
    for (const userId of [...where.keys()]) remove(userId, slot);
  });
}
