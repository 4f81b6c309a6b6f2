import type { ChildProcess } from "node:child_process";
import type http from "node:http";
import type net from "node:net";

/**
 * Every private part of Node (24) that this server reaches, in one place:
 * each function says why it is needed and what it assumes.
 * test/internals.test.ts pins each one against the Node the tests run on, so
 * that an upgrade that changes one fails a test there. In src/shared because
 * the worker needs the http one too; the net and child_process ones serve the
 * primary's balancer and hand-off.
 */

// ---- net: the libuv handle under a socket ----

interface ReadHandle {
  reading?: boolean;
  readStop?: () => number;
}

function handleOf(socket: net.Socket): ReadHandle | undefined {
  return (socket as unknown as { _handle?: ReadHandle | null })._handle ?? undefined;
}

/**
 * Stops reading a socket at the handle and keeps net from starting again.
 * `pause()` alone leaves the handle reading into the stream's buffer; and
 * net's `Socket#_read()` (called on the next tick, e.g. while the socket waits
 * to be sent to a worker) restarts reading unless `_handle.reading` is true.
 * So: `_handle.readStop()`, then `_handle.reading = true`, until
 * `resumeHandleReads`.
 */
export function holdHandleReads(socket: net.Socket): void {
  socket.pause();
  const handle = handleOf(socket);
  if (handle?.readStop) {
    handle.readStop();
    handle.reading = true;
  }
}

/**
 * Undoes `holdHandleReads`: net may read from the handle again. Call it from
 * a "data" handler, as the balancer does: on a socket still waiting for its
 * first bytes, the stream believes a read is pending and `resume()` does not
 * call `_read()` again.
 */
export function resumeHandleReads(socket: net.Socket): void {
  const handle = handleOf(socket);
  if (handle) handle.reading = false;
  socket.resume();
}

// ---- child_process: handles sent to a child ----

export interface UnacknowledgedHandles {
  /** The handle written to the channel, awaiting the child's NODE_HANDLE_ACK (the raw handle, not the net.Socket). */
  inFlight?: { close(): void };
  /** Messages sent after it, each with its net.Socket, not yet written. */
  queued: { message?: unknown; handle?: unknown }[];
}

/**
 * Takes back from a child process the handles it never acknowledged, and
 * clears them so that the channel stops waiting for it. Node sends one handle
 * at a time: the one written is kept in `_pendingMessage` (closed on the ack),
 * later messages wait in `_handleQueue` (the user message and its handle)
 * until then. A child that dies before acknowledging strands them: nothing
 * closes the one in flight and the queue is never sent.
 */
export function takeUnacknowledgedHandles(child: ChildProcess): UnacknowledgedHandles {
  const state = child as unknown as {
    _pendingMessage?: { handle?: { close(): void } | null } | null;
    _handleQueue?: { message?: unknown; handle?: unknown }[] | null;
  };
  const inFlight = state._pendingMessage?.handle ?? undefined;
  const queued = state._handleQueue ?? [];
  state._pendingMessage = null;
  state._handleQueue = null;
  return { ...(inFlight ? { inFlight } : {}), queued };
}

// ---- http: stalled-request checks ----

/**
 * Starts Node's checks of `headersTimeout`/`requestTimeout` every
 * `intervalMs` on a server that gets its sockets by `emit("connection")`
 * rather than from `listen()`. Node runs them on a timer of
 * `connectionsCheckingInterval` (a constructor option in the typings, a plain
 * property that the timer reads when it starts) set up by the server's own
 * "listening" handler; a server that never listens never checks.
 */
export function startStalledRequestChecks(server: http.Server, intervalMs: number): void {
  (server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval = intervalMs;
  if (!server.listening) server.emit("listening");
}

// ---- net: a listening socket received from another process ----

/**
 * Sets a listening socket's backlog (listen(2) again on the bound socket,
 * through the libuv handle). A net.Server received over IPC listens on the
 * sent socket with Node's default backlog, 511 (child_process's handle
 * conversion calls `server.listen(handle)`, which calls `_handle.listen(511)`
 * with no backlog given), which would shrink the queue of a socket that
 * travels between the primary and its workers. Returns libuv's status (0).
 */
export function setListenBacklog(server: net.Server, backlog: number): number {
  const handle = (
    server as unknown as { _handle?: { listen?: (backlog: number) => number } | null }
  )._handle;
  return handle?.listen?.(backlog) ?? -1;
}
