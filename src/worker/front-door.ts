import type http from "node:http";
import net from "node:net";
import type { Logger } from "pino";
import {
  answerUnavailable,
  isPrimaryPath,
  type PortKind,
  parseRequestLine,
  readRequestLine,
} from "../shared/front-door.js";
import { slotFromRequestLine } from "../shared/ipc.js";
import { holdHandleReads, shrinkListenBacklog } from "../shared/node-internals.js";

/**
 * The worker's own listeners on both ports. Every worker listens on the same
 * two ports with SO_REUSEPORT, and the kernel spreads new connections across
 * them: no process relays a connection in the usual case. Like the primary's
 * balancer, it reads a connection up to the end of its request line, then:
 *
 * - a new session, an API request, a request of a session this worker owns
 *   (the slot in the Engine.IO sid): served here;
 * - a request of a session another worker owns (a polling request, a
 *   websocket upgrade) or a path the primary answers (health, readiness,
 *   metrics, dashboard): relayed to the primary with the bytes read, which
 *   hands it to the owner or serves it;
 *
 * A worker that sheds load refuses new sessions itself (OVERLOADED): with
 * SO_REUSEPORT it keeps its share of new connections.
 *
 * Before a socket is sent, reads stop on its handle and stay stopped (see
 * src/primary/balancer.ts: Node reads a sent handle until the receiver
 * acknowledges it and drops those bytes).
 */

export interface FrontDoorDeps {
  log: Logger;
  slot: number;
  servers: Record<PortKind, http.Server>;
  /** Sends the socket with the bytes read to the primary; false if the channel is closed. */
  relay(port: PortKind, socket: net.Socket, head: Buffer): boolean;
  host: string;
  apiHost: string;
  /** Until the request line: a connection that sends nothing is not kept longer than a stalled one. */
  headerTimeoutMs: number;
}

export interface FrontDoor {
  /** Listens on both ports beside the other workers; resolves once both are bound. */
  listen(ports: { publicPort: number; apiPort: number }): Promise<void>;
  /** Stops accepting, within a few ms (connections already taken stay). */
  close(): void;
  readonly listening: boolean;
}

export function createFrontDoor(deps: FrontDoorDeps): FrontDoor {
  const listeners: net.Server[] = [];
  let closed = false;

  function serveHere(port: PortKind, socket: net.Socket, head: Buffer): void {
    deps.servers[port].emit("connection", socket);
    socket.emit("data", head);
    socket.resume();
  }

  function route(port: PortKind, socket: net.Socket, head: Buffer, line: string): void {
    const { method, target, path } = parseRequestLine(line);
    let elsewhere = isPrimaryPath(port, method, path);
    if (!elsewhere && port === "public") {
      const owner = slotFromRequestLine(target);
      elsewhere = owner !== undefined && owner !== deps.slot;
    }
    if (!elsewhere) {
      serveHere(port, socket, head);
      return;
    }
    holdHandleReads(socket);
    if (deps.relay(port, socket, head)) return;
    // No primary to relay to (the channel closed: this worker is going away).
    socket.setTimeout(5_000, () => socket.destroy());
    answerUnavailable(socket, "this worker is stopping, retry");
  }

  function listenOne(port: PortKind, portNumber: number, host: string): Promise<void> {
    const server = net.createServer({ noDelay: true }, (socket) =>
      readRequestLine(socket, deps.headerTimeoutMs, (head, line) =>
        route(port, socket, head, line),
      ),
    );
    listeners.push(server);
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      // exclusive: this process's own socket, not a handle shared through the primary.
      server.listen(
        { port: portNumber, host, backlog: 4096, reusePort: true, exclusive: true },
        () => {
          server.off("error", reject);
          server.on("error", (err) => deps.log.error({ err, port }, "listener error"));
          resolve();
        },
      );
    });
  }

  return {
    async listen({ publicPort, apiPort }) {
      if (listeners.length > 0) return;
      try {
        if (closed) throw new Error("the worker is stopping");
        await listenOne("public", publicPort, deps.host);
        if (closed) throw new Error("the worker is stopping");
        await listenOne("api", apiPort, deps.apiHost);
        if (closed) throw new Error("the worker is stopping");
      } catch (err) {
        for (const s of listeners.splice(0)) s.close();
        throw err;
      }
    },
    close() {
      closed = true;
      // Not at once: connections already queued on these sockets would be reset
      // (shrinkListenBacklog). They are taken first, then the sockets close.
      const closing = listeners.splice(0);
      for (const s of closing) shrinkListenBacklog(s);
      setTimeout(() => {
        for (const s of closing) s.close();
      }, 50);
    },
    get listening() {
      return listeners.length > 0;
    },
  };
}
