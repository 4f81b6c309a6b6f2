import type net from "node:net";
import type { Logger } from "pino";
import {
  answerUnavailable,
  type PortKind,
  parseRequestLine,
  readRequestLine,
} from "../shared/front-door.js";
import { slotFromRequestLine } from "../shared/ipc.js";
import { holdHandleReads, resumeHandleReads } from "../shared/node-internals.js";

/**
 * The primary's routing of connections. Workers accept connections on the
 * public port themselves (src/worker/front-door.ts, SO_REUSEPORT); the
 * primary accepts on the listening sockets it holds (the API port's; the
 * public port's of a worker being replaced, at start, while the host drains:
 * src/primary/listeners.ts), and
 * routes the few connections a worker relays to it (`accept`). For each, it
 * reads only up to the end of the HTTP request line, then either serves it
 * itself (health, readiness, metrics, dashboard) or hands the socket to a
 * worker:
 *
 * - public port: by the slot encoded in the Engine.IO `sid`, else round-robin
 *   over workers that are up and not overloaded (not the worker that relayed
 *   it, when another one is);
 * - API port: round-robin, no stickiness, so a keep-alive client keeps its
 *   connection to one worker for thousands of requests.
 *
 * Reads are stopped on the handle *before* `worker.send(…, socket)`, and kept
 * stopped: Node keeps reading a sent handle until the worker acknowledges it
 * and throws those bytes away, which is how the docs' sticky recipe loses
 * about one handshake in 5,000. Stopping once is not enough. While a handle
 * waits in the channel's queue behind the previous one's acknowledgement (the
 * usual case in a connect storm), net's stream machinery calls `_read()` on
 * the next tick and starts reading again; the client's Socket.IO CONNECT,
 * sent once the worker's open packet arrives, was then read and dropped by
 * the primary when its acknowledgement came late (1 handshake in ~50,000,
 * closed by the worker's connect timeout 10 s later: bench/RESULTS.md). So
 * the handle is marked as reading, which is the flag `_read()` checks, until
 * the primary itself reads from it again (src/shared/node-internals.ts).
 */

export type { PortKind };

export interface BalancerDeps {
  log: Logger;
  /** Hands the socket and the bytes read so far to a worker; false if it could not. */
  handOff: (slot: number, port: PortKind, socket: net.Socket, head: Buffer) => boolean;
  /** Slots that may take new sessions, best first is not required. */
  eligibleSlots: () => number[];
  /** Slots that are alive (may still own sessions). */
  liveSlots: () => Set<number>;
  /** Serves a connection in the primary itself. */
  serveLocally: (socket: net.Socket, head: Buffer) => void;
  /** Paths the primary answers itself when they open a connection. */
  isPrimaryPath: (port: PortKind, method: string, path: string) => boolean;
  headerTimeoutMs?: number;
}

export interface Balancer {
  /** Routes the connections a listening socket the primary holds accepts. */
  attach(port: PortKind, server: net.Server): void;
  /**
   * Routes a connection whose request line another process read (`head`:
   * every byte read); `from`: the worker that relayed it, which gets it back
   * only when no other worker may take it.
   */
  accept(port: PortKind, socket: net.Socket, head: Buffer, from?: number): void;
}

export function createBalancer(deps: BalancerDeps): Balancer {
  let rr = 0;

  function pickSlot(from: number | undefined): number | undefined {
    const eligible = deps.eligibleSlots();
    const others = eligible.filter((s) => s !== from);
    const slots = others.length > 0 ? others : eligible;
    if (slots.length === 0) return undefined;
    rr = (rr + 1) % slots.length;
    return slots[rr];
  }

  function route(
    port: PortKind,
    socket: net.Socket,
    head: Buffer,
    line: string,
    from?: number,
  ): void {
    const { method, target, path } = parseRequestLine(line);

    if (deps.isPrimaryPath(port, method, path)) {
      deps.serveLocally(socket, head);
      return;
    }
    let slot: number | undefined;
    if (port === "public") {
      const owner = slotFromRequestLine(target);
      if (owner !== undefined && deps.liveSlots().has(owner)) slot = owner;
    }
    slot ??= pickSlot(from);
    holdHandleReads(socket);
    if (slot !== undefined && deps.handOff(slot, port, socket, head)) return;
    // The chosen worker is gone (it died before the supervisor heard of it): try the others.
    for (const other of deps.eligibleSlots()) {
      if (other !== slot && !socket.destroyed && deps.handOff(other, port, socket, head)) return;
    }
    resumeHandleReads(socket); // to see the client's end of the connection
    answerUnavailable(socket, "no worker is ready, retry");
    // A relayed socket (`accept`) may not read again; it is not kept waiting for the client's end.
    socket.setTimeout(5_000, () => socket.destroy());
  }

  function onConnection(port: PortKind, socket: net.Socket): void {
    readRequestLine(socket, deps.headerTimeoutMs ?? 10_000, (head, line) =>
      route(port, socket, head, line),
    );
  }

  return {
    attach(port, server) {
      server.on("connection", (socket: net.Socket) => {
        socket.setNoDelay(true);
        onConnection(port, socket);
      });
    },
    accept(port, socket, head, from) {
      const eol = head.indexOf("\r\n");
      if (eol === -1) {
        socket.destroy();
        return;
      }
      route(port, socket, head, head.subarray(0, eol).toString("latin1"), from);
    },
  };
}
