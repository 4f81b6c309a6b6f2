import type net from "node:net";
import { errorBody, requestIdFor } from "./http-error.js";

/**
 * What the primary's balancer and each worker's front door share: reading a
 * new connection up to the end of its HTTP request line (never further, so
 * that the connection can still be handed to another process with the bytes
 * read), and the routing facts taken from that line.
 */

export type PortKind = "public" | "api";

export interface RequestLine {
  method: string;
  /** The request target as sent (path and query). */
  target: string;
  path: string;
}

const MAX_REQUEST_LINE = 8 * 1024;

export function parseRequestLine(line: string): RequestLine {
  const sp1 = line.indexOf(" ");
  const sp2 = line.indexOf(" ", sp1 + 1);
  const method = line.slice(0, sp1);
  const target = line.slice(sp1 + 1, sp2 === -1 ? undefined : sp2);
  const q = target.indexOf("?");
  return { method, target, path: q === -1 ? target : target.slice(0, q) };
}

/**
 * Paths the primary answers itself (src/primary/internal-http.ts), so they
 * keep working while a worker is stuck or restarting: `GET /health` on both
 * ports; on the API port `/ready`, `/metrics` and the dashboard (its login
 * and logout forms are POSTs).
 */
export function isPrimaryPath(port: PortKind, method: string, path: string): boolean {
  if (method === "GET" && path === "/health") return true;
  if (port !== "api") return false;
  const under = (p: string) => path === p || path.startsWith(`${p}/`);
  if (method === "GET") return path === "/ready" || under("/metrics") || under("/dashboard");
  return method === "POST" && path.startsWith("/dashboard/");
}

/**
 * Reads a new connection until its request line is complete, then calls
 * `onLine` with every byte read so far (`head`) and the line; the reader's
 * listeners are gone by then but one shared "error" listener (an error on a
 * socket waiting to be handed over must not throw). A connection that sends no complete line
 * within `timeoutMs` is destroyed; one whose line is too long gets 414.
 * `onLine` runs inside the socket's "data" handler, where
 * `resumeHandleReads` works (src/shared/node-internals.ts).
 */
export function readRequestLine(
  socket: net.Socket,
  timeoutMs: number,
  onLine: (head: Buffer, line: string) => void,
): void {
  let chunks: Buffer[] = [];
  let size = 0;
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  // Nothing of the reader stays with the connection once the line is read
  // (it held the request's first bytes and a cleared timer for the
  // connection's life: ~1 KB per idle websocket), but the error listener.
  const cleanup = () => {
    clearTimeout(timer);
    socket.off("data", onData);
    socket.off("close", cleanup);
    chunks = [];
  };
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    const head = chunks.length === 1 ? chunk : Buffer.concat(chunks);
    const eol = head.indexOf("\r\n");
    if (eol === -1 && size < MAX_REQUEST_LINE) return;
    cleanup();
    if (eol === -1) {
      socket.end("HTTP/1.1 414 URI Too Long\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    onLine(head, head.subarray(0, eol).toString("latin1"));
  };
  socket.on("data", onData);
  // Kept for the socket's life: an error on a socket waiting to be handed over must not throw.
  socket.on("error", ignoreError);
  socket.on("close", cleanup);
}

/** Errors are the connection's owner's (HTTP server, ws) to handle; this only keeps them from throwing. */
function ignoreError(): void {}

/** 503 with Retry-After in the contract's error format, and the connection closed. */
export function answerUnavailable(socket: net.Socket, message: string): void {
  const requestId = requestIdFor(undefined);
  const body = JSON.stringify(errorBody("OVERLOADED", requestId, message));
  socket.end(
    "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n" +
      `X-Request-Id: ${requestId}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
