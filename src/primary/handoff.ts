import type net from "node:net";
import type { PortKind } from "./balancer.js";
import type { Supervisor } from "./supervisor.js";

/**
 * Hands accepted sockets to workers without ever losing one.
 *
 * A socket is sent with `keepOpen`, so the primary keeps its own descriptor
 * until the worker says it has taken the connection (`ss:conn-taken`); only
 * then is the primary's copy closed (the worker's copy keeps the connection).
 * If the worker dies first — SIGKILL between send and receipt — the primary
 * still holds the socket and the bytes it read, and hands them to another
 * worker. Without this, a connection sent to a dying worker hung forever:
 * Node closes a sent handle only on the worker's acknowledgement, which a
 * dead worker never sends.
 */

interface Pending {
  slot: number;
  port: PortKind;
  socket: net.Socket;
  head: Buffer;
  timer: NodeJS.Timeout;
}

/** A worker that neither takes nor dies within this is given up on. */
const TAKE_TIMEOUT_MS = 30_000;
/** Holding the primary's copy open made bodies larger than the socket buffer hang (api 413 test). */
const KEEP_OPEN = false;

export function createHandoff(deps: { sup: Supervisor; eligibleSlots: () => number[] }) {
  const { sup } = deps;
  const pending = new Map<number, Pending>();
  let nextId = 1;

  function send(slot: number, port: PortKind, socket: net.Socket, head: Buffer): boolean {
    const id = nextId++;
    // keepOpen is off until the large-body hang it causes is understood
    // (bodies larger than the socket buffer stalled): Node then closes the
    // primary's copy once the worker acknowledges the handle.
    const ok = sup.send(slot, { t: "ss:conn", id, port, head: head.toString("latin1") }, socket, {
      keepOpen: KEEP_OPEN,
    });
    if (!ok) return false;
    if (!KEEP_OPEN) return true;
    const timer = setTimeout(() => settle(id), TAKE_TIMEOUT_MS);
    timer.unref();
    pending.set(id, { slot, port, socket, head, timer });
    return true;
  }

  /** The worker has the connection (or never will): close the primary's copy. */
  function settle(id: number): void {
    const p = pending.get(id);
    if (!p) return;
    pending.delete(id);
    clearTimeout(p.timer);
    p.socket.destroy();
  }

  sup.on("message", (_slot, msg) => {
    if (msg.t === "ss:conn-taken") settle(msg.id);
  });
  sup.on("exit", (slot) => {
    for (const [id, p] of pending) {
      if (p.slot !== slot) continue;
      pending.delete(id);
      clearTimeout(p.timer);
      const others = deps.eligibleSlots().filter((s) => s !== slot);
      const next = others[id % Math.max(1, others.length)];
      if (next === undefined || !send(next, p.port, p.socket, p.head)) p.socket.destroy();
    }
  });

  return { send };
}
