import type net from "node:net";
import type { PortKind } from "./balancer.js";
import type { Supervisor } from "./supervisor.js";

/**
 * Hands an accepted socket, with the bytes the balancer read from it, to a
 * worker. Node's default for a sent handle applies: the primary's copy is
 * closed once the worker acknowledges it.
 *
 * Known gap: a connection sent to a worker in the instant it is SIGKILLed
 * hangs until the client gives up (a dead worker never acknowledges). Keeping
 * the primary's copy open (`keepOpen`) until the worker confirmed, and handing
 * it to another worker if it died first, was tried and dropped: request
 * bodies larger than the socket buffer then stalled (the API's 413 test and
 * the 1 MiB hostile body).
 */
export function createHandoff(deps: { sup: Supervisor }) {
  return {
    send(slot: number, port: PortKind, socket: net.Socket, head: Buffer): boolean {
      return deps.sup.send(slot, { t: "ss:conn", port, head: head.toString("latin1") }, socket);
    },
  };
}
