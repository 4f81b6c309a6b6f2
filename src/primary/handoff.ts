import type { Worker } from "node:cluster";
import type net from "node:net";
import type { Logger } from "pino";
import type { PrimaryToWorker } from "../shared/ipc.js";
import { takeUnacknowledgedHandles } from "../shared/node-internals.js";
import type { PortKind } from "./balancer.js";
import type { Supervisor } from "./supervisor.js";

/**
 * Hands an accepted socket, with the bytes the balancer read from it, to a
 * worker. Node's default for a sent handle applies: the primary's copy is
 * closed once the worker acknowledges it.
 *
 * A worker that dies with a handle in flight strands it in Node: the
 * channel's `disconnect()` waits for the handle queue to drain, which needs
 * an acknowledgement the dead worker never sends. The primary's copy of the
 * socket in flight then stays open (its client hangs until it gives up) and
 * the sockets queued behind it are never sent (`test/lifecycle-crash.test.ts`
 * hit it under load). So when a worker exits, the handoff takes them back from
 * the child process object: the one in flight is closed (the dead worker may
 * have read from it, so its client sees the connection end, like every
 * connection of that worker), the queued ones, untouched so far, go to
 * another worker.
 */

export function createHandoff(deps: {
  sup: Supervisor;
  eligibleSlots: () => number[];
  log: Logger;
}) {
  const { sup } = deps;

  function send(slot: number, port: PortKind, socket: net.Socket, head: Buffer): boolean {
    return sup.send(slot, { t: "ss:conn", port, head: head.toString("latin1") }, socket);
  }

  function rescue(slot: number, worker: Worker): void {
    const { inFlight, queued } = takeUnacknowledgedHandles(worker.process);
    let closed = 0;
    let rehanded = 0;
    if (inFlight) {
      inFlight.close();
      closed++;
    }
    const others = deps.eligibleSlots().filter((s) => s !== slot);
    for (const q of queued) {
      const msg = q.message as PrimaryToWorker | undefined;
      const socket = q.handle as net.Socket | null | undefined;
      if (!socket || msg?.t !== "ss:conn") continue;
      const next = others[rehanded % Math.max(1, others.length)];
      if (next !== undefined && send(next, msg.port, socket, Buffer.from(msg.head, "latin1"))) {
        rehanded++;
      } else {
        socket.destroy();
        closed++;
      }
    }
    if (closed + rehanded > 0) {
      deps.log.warn({ slot, closed, rehanded }, "connections in hand-off when the worker died");
    }
  }

  sup.on("exit", (slot, _code, _signal, worker) => rescue(slot, worker));

  return { send };
}
