import type http from "node:http";
import type net from "node:net";
import type { Logger } from "pino";
import {
  answerUnavailable,
  isPrimaryPath,
  type PortKind,
  parseRequestLine,
  readRequestLine,
} from "../shared/front-door.js";
import { slotFromRequestLine } from "../shared/ipc.js";
import { holdHandleReads, setListenBacklog } from "../shared/node-internals.js";

/**
 * The worker's own listening socket, lent by the primary (`ss:listen`:
 * src/primary/listeners.ts). Every worker has one socket of the public
 * port's SO_REUSEPORT group, and the kernel spreads new connections across
 * them (the API port's connections reach workers handed off by the primary): no process relays a connection in the usual case. Like the
 * primary's balancer, it reads a connection up to the end of its request
 * line, then:
 *
 * - a new session, an API request, a request of a session this worker owns
 *   (the slot in the Engine.IO sid): served here;
 * - a request of a session another worker owns (a polling request, a
 *   websocket upgrade) or a path the primary answers (health, readiness,
 *   metrics, dashboard): relayed to the primary with the bytes read, which
 *   hands it to the owner or serves it;
 * - a new session while this worker sheds load and another worker takes
 *   new sessions (`passOnNew`), and everything but its own sessions once it
 *   stops: relayed too, and the primary hands it to another worker (or
 *   answers 503 while the host drains).
 *
 * A stopping worker gives its sockets back to the primary before it closes
 * its copies, so that the connections queued on them are not reset.
 *
 * Before a socket is relayed, reads stop on its handle and stay stopped (see
 * src/primary/balancer.ts: Node reads a sent handle until the receiver
 * acknowledges it and drops those bytes).
 */

export interface FrontDoorDeps {
  log: Logger;
  slot: number;
  servers: Record<PortKind, http.Server>;
  /**
   * Sends the socket with the bytes read to the primary; false if the
   * channel is closed. `written` once it is on the channel.
   */
  relay(port: PortKind, socket: net.Socket, head: Buffer, written: () => void): boolean;
  /** True while new sessions are better served by another worker (this one sheds load). */
  passOnNew(): boolean;
  /** Gives a listening socket back to the primary; resolves once the primary accepts on it. */
  giveBack(port: PortKind, server: net.Server): Promise<void>;
  /** Until the request line: a connection that sends nothing is not kept longer than a stalled one. */
  headerTimeoutMs: number;
}

export interface FrontDoor {
  /** Accepts connections on a listening socket the primary lent (SO_REUSEPORT beside the others). */
  adopt(port: PortKind, server: net.Server): void;
  /**
   * Stops accepting: gives the sockets back to the primary, then closes this
   * process's copies (connections already taken stay). From now on only
   * this worker's own sessions are served here. Resolves once every
   * connection taken is served here or on the channel to the primary (a
   * worker that exits with one still in Node's queue resets it), or after
   * `settleMs`.
   */
  close(settleMs: number): Promise<void>;
  readonly listening: boolean;
}

/** Node's listen(2) again on a received socket uses its default backlog, 511. */
const BACKLOG = 4096;

export function createFrontDoor(deps: FrontDoorDeps): FrontDoor {
  const listeners = new Map<net.Server, PortKind>();
  let stopping = false;
  /** Connections accepted, not yet served here nor written to the channel. */
  let unsettled = 0;
  let onSettled: (() => void) | undefined;
  const settle = () => {
    unsettled--;
    if (unsettled === 0) onSettled?.();
  };

  function serveHere(port: PortKind, socket: net.Socket, head: Buffer): void {
    settle();
    deps.servers[port].emit("connection", socket);
    socket.emit("data", head);
    socket.resume();
  }

  function route(port: PortKind, socket: net.Socket, head: Buffer, line: string): void {
    const { method, target, path } = parseRequestLine(line);
    let elsewhere = isPrimaryPath(port, method, path);
    if (!elsewhere) {
      const owner = port === "public" ? slotFromRequestLine(target) : undefined;
      if (owner !== undefined) elsewhere = owner !== deps.slot;
      else elsewhere = stopping || (port === "public" && deps.passOnNew());
    }
    if (!elsewhere) {
      serveHere(port, socket, head);
      return;
    }
    holdHandleReads(socket);
    if (deps.relay(port, socket, head, settle)) return;
    settle();
    // No primary to relay to (the channel closed: this worker is going away).
    socket.setTimeout(5_000, () => socket.destroy());
    answerUnavailable(socket, "this worker is stopping, retry");
  }

  return {
    adopt(port, server) {
      if (stopping) throw new Error("the worker is stopping");
      setListenBacklog(server, BACKLOG);
      server.on("connection", (socket: net.Socket) => {
        socket.setNoDelay(true);
        unsettled++;
        // Closed before its request line: nothing left to settle. Removed
        // once routed, so no closure stays with a served connection.
        const closedEarly = () => settle();
        socket.once("close", closedEarly);
        readRequestLine(socket, deps.headerTimeoutMs, (head, line) => {
          socket.off("close", closedEarly);
          route(port, socket, head, line);
        });
      });
      server.on("error", (err) => deps.log.error({ err, port }, "listening socket error"));
      listeners.set(server, port);
    },
    async close(settleMs) {
      stopping = true;
      const giving = [...listeners].map(async ([server, port]) => {
        try {
          await deps.giveBack(port, server);
        } catch (err) {
          // The primary is gone or did not answer: the queued connections go with this copy.
          deps.log.warn({ err, port }, "could not give a listening socket back");
        }
        listeners.delete(server);
        server.close();
      });
      await Promise.all(giving);
      if (unsettled > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, settleMs);
          onSettled = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
    get listening() {
      return listeners.size > 0;
    },
  };
}
