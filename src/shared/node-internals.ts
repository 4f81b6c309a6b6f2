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

// ---- net: a listening socket about to close ----

/**
 * Lowers a listening socket's backlog to its minimum (listen(2) again on the
 * bound socket, through the libuv handle). Closing a socket of an
 * SO_REUSEPORT group resets the connections waiting in its accept queue
 * (Linux moves them to another socket of the group only with
 * net.ipv4.tcp_migrate_req). With the backlog at its minimum the kernel
 * drops new SYNs for this socket instead of queueing them, the client
 * retransmits them (after ~1 s) to a socket that stays, and the few already
 * queued are accepted before the close.
 */
export function shrinkListenBacklog(server: net.Server): void {
  const handle = (
    server as unknown as { _handle?: { listen?: (backlog: number) => number } | null }
  )._handle;
  handle?.listen?.(0);
}
