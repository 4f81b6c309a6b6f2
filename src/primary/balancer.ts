import net from "node:net";
import type { Logger } from "pino";
import { errorBody, requestIdFor } from "../shared/http-error.js";
import { slotFromRequestLine } from "../shared/ipc.js";
import { holdHandleReads, resumeHandleReads } from "../shared/node-internals.js";

/**
 * The primary's two listeners. For each TCP connection it reads only up to
 * the end of the HTTP request line, then either serves it itself (health,
 * readiness, metrics, dashboard) or hands the socket to a worker:
 *
 * - public port: by the slot encoded in the Engine.IO `sid`, else round-robin
 *   over workers that are up and not overloaded;
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

export type PortKind = "public" | "api";

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

const MAX_REQUEST_LINE = 8 * 1024;

export interface Balancer {
  listen(port: PortKind, portNumber: number, host: string): Promise<number>;
  close(): Promise<void>;
}

export function createBalancer(deps: BalancerDeps): Balancer {
  const servers: net.Server[] = [];
  let rr = 0;

  function pickSlot(): number | undefined {
    const slots = deps.eligibleSlots();
    if (slots.length === 0) return undefined;
    rr = (rr + 1) % slots.length;
    return slots[rr];
  }

  function route(port: PortKind, socket: net.Socket, head: Buffer, line: string): void {
    const sp1 = line.indexOf(" ");
    const sp2 = line.indexOf(" ", sp1 + 1);
    const method = line.slice(0, sp1);
    const target = line.slice(sp1 + 1, sp2 === -1 ? undefined : sp2);
    const q = target.indexOf("?");
    const path = q === -1 ? target : target.slice(0, q);

    if (deps.isPrimaryPath(port, method, path)) {
      resumeHandleReads(socket);
      deps.serveLocally(socket, head);
      return;
    }
    let slot: number | undefined;
    if (port === "public") {
      const owner = slotFromRequestLine(target);
      if (owner !== undefined && deps.liveSlots().has(owner)) slot = owner;
    }
    slot ??= pickSlot();
    if (slot !== undefined && deps.handOff(slot, port, socket, head)) return;
    // The chosen worker is gone (it died before the supervisor heard of it): try the others.
    for (const other of deps.eligibleSlots()) {
      if (other !== slot && !socket.destroyed && deps.handOff(other, port, socket, head)) return;
    }
    resumeHandleReads(socket); // to see the client's end of the connection
    // The contract's error body, as every other HTTP error.
    const requestId = requestIdFor(undefined);
    const body = JSON.stringify(errorBody("OVERLOADED", requestId, "no worker is ready, retry"));
    socket.end(
      "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n" +
        `X-Request-Id: ${requestId}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }

  function onConnection(port: PortKind, socket: net.Socket): void {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => socket.destroy(), deps.headerTimeoutMs ?? 10_000);
    const cleanup = () => {
      clearTimeout(timer);
      socket.off("data", onData);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      const head = chunks.length === 1 ? chunk : Buffer.concat(chunks);
      const eol = head.indexOf("\r\n");
      if (eol === -1 && size < MAX_REQUEST_LINE) return;
      cleanup();
      holdHandleReads(socket);
      if (eol === -1) {
        resumeHandleReads(socket);
        socket.end("HTTP/1.1 414 URI Too Long\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        return;
      }
      route(port, socket, head, head.subarray(0, eol).toString("latin1"));
    };
    socket.on("data", onData);
    socket.on("error", () => cleanup());
    socket.on("close", () => cleanup());
  }

  return {
    listen(port, portNumber, host) {
      const server = net.createServer({ noDelay: true }, (socket) => onConnection(port, socket));
      servers.push(server);
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen({ port: portNumber, host, backlog: 4096 }, () => {
          server.off("error", reject);
          const addr = server.address();
          resolve(typeof addr === "object" && addr ? addr.port : portNumber);
        });
      });
    },
    async close() {
      // Stops accepting; connections already handed off belong to the workers.
      for (const s of servers) s.close();
    },
  };
}
