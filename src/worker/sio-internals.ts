import http from "node:http";
import { Socket } from "socket.io";

/**
 * Every private part of Socket.IO (4.8), its adapter (2.5) and engine.io (6.6) that this server
 * reaches, in one place: each function says why it is needed and what it
 * assumes. test/internals.test.ts pins each one against the installed
 * versions, so that an upgrade that changes one fails a test there rather
 * than quietly in production. Nothing else in src/ should reach past the
 * typed API of either library.
 */

// ---- Socket.IO ----

/**
 * The callbacks of this socket's emits that asked for an ack and are still
 * unanswered: the private `acks` Map, keyed by packet id, filled in id order
 * and emptied as the client answers (or when the emit times out). Read to
 * wait for acks still owed at shutdown, and to sweep callbacks of clients
 * that never answer (push/acks.ts).
 */
export function pendingAcks(socket: object): Map<number, unknown> {
  return (socket as { acks: Map<number, unknown> }).acks;
}

/**
 * The namespace's packet id counter (`_ids`, public in the typings but
 * undocumented): every emit with an ack, to one socket or broadcast, takes
 * the next id from it, so ids only grow and a sample of the counter taken
 * earlier is a watermark for the acks registered before it.
 */
export function ackIdCounter(nsp: object): number {
  return (nsp as { _ids: number })._ids;
}

export type AckFunction = (...args: unknown[]) => void;

/**
 * Passes every ack function that Socket.IO hands to an event handler through
 * `wrap`, whichever handler later calls it. Socket.IO has no public hook for
 * the acks a handler sends; they are built by the private
 * `Socket.prototype.ack(id)`, stable across v4. Patches the prototype: call
 * it once per process. False if the method is gone.
 */
export function wrapAckFunctions(wrap: (send: AckFunction) => AckFunction): boolean {
  const proto = Socket.prototype as unknown as { ack?: (id: number) => AckFunction };
  const original = proto.ack;
  if (typeof original !== "function") return false;
  proto.ack = function (this: unknown, id: number) {
    return wrap(original.call(this, id));
  };
  return true;
}

/**
 * Counts the events emitted to clients without a listener per socket:
 * Socket.IO calls the private `Socket.prototype.notifyOutgoingListeners(packet)`
 * once for every recipient of every emit, to one socket or broadcast (v4;
 * `onAnyOutgoing` listeners run from it), and a broadcast passes the same
 * packet object for each of its recipients in this process. So a run of
 * calls with one packet is one event sent to `n` sockets: the patch only
 * counts the run, and `sink(event, n)` runs once per broadcast instead of a
 * listener per recipient (which copied the listener array and hashed the
 * metric's labels for each of 10,000 sockets). Returns the flush that hands
 * over the run in progress (call it before reading the counts), or
 * undefined if the method is gone. Patches the prototype: once per process.
 */
export function countOutgoingEvents(
  sink: (event: unknown, sockets: number) => void,
): (() => void) | undefined {
  const proto = Socket.prototype as unknown as {
    notifyOutgoingListeners?: (packet: { data?: unknown[] }) => void;
  };
  const original = proto.notifyOutgoingListeners;
  if (typeof original !== "function") return undefined;
  let run: { data?: unknown[] } | null = null;
  let n = 0;
  const flush = () => {
    if (run) sink(run.data?.[0], n);
    run = null;
    n = 0;
  };
  proto.notifyOutgoingListeners = function (this: unknown, packet) {
    if (packet !== run) {
      flush();
      run = packet;
    }
    n += 1;
    original.call(this, packet);
  };
  return flush;
}

/** One local broadcast in progress: its recipients and how far it got. */
interface BroadcastJob {
  packet: unknown;
  encoded: unknown;
  packetOpts: unknown;
  /** The whole websocket frame, when Socket.IO pre-encoded one (one text packet). */
  frame: Buffer | undefined;
  sockets: BroadcastRecipient[];
  next: number;
}
interface BroadcastRecipient {
  notifyOutgoingListeners?: (packet: unknown) => void;
  client: { conn: FrameTarget; writeToEngine(encoded: unknown, opts: unknown): void };
}
/** What writeFrame reads of an engine.io connection and its `ws` WebSocket. */
interface FrameTarget {
  readyState: string;
  writeBuffer: unknown[];
  transport: {
    name: string;
    writable: boolean;
    perMessageDeflate?: unknown;
    socket?: {
      readyState: number;
      _sender?: { _state: number; _queue: unknown[] };
      _socket?: { write(data: Buffer): boolean };
    };
  };
}

/**
 * Writes a broadcast's whole websocket frame (header and payload in one
 * buffer, made once per broadcast) straight to the connection's TCP socket,
 * when nothing else is on the way: engine.io's transport is free and has
 * nothing queued, and `ws`'s sender is idle (`_state` DEFAULT, empty
 * `_queue`: a frame is never written half-way between two JS calls). That
 * is what engine.io does with Socket.IO's pre-encoded frame, minus a packet
 * object, a new `writeBuffer` array, a callback entry and a corked
 * two-buffer `writev` with its completion tick per recipient. False, and
 * nothing written, otherwise (polling, a write in progress, compression):
 * the caller goes through engine.io, behind what is queued.
 */
function writeFrame(conn: FrameTarget, frame: Buffer): boolean {
  const t = conn.transport;
  if (t.name !== "websocket" || !t.writable || t.perMessageDeflate) return false;
  if (conn.readyState !== "open" || conn.writeBuffer.length > 0) return false;
  const ws = t.socket;
  const sender = ws?._sender;
  if (ws?.readyState !== 1 || !sender || sender._state !== 0 || sender._queue.length > 0) {
    return false;
  }
  if (!ws._socket) return false;
  ws._socket.write(frame);
  return true;
}
interface InMemoryAdapter {
  nsp: { name: string };
  _encode(packet: unknown, packetOpts: unknown): unknown;
  apply(opts: unknown, each: (socket: BroadcastRecipient) => void): void;
}

/**
 * The patch's state, kept on the patched prototype itself: a process may
 * load this module more than once (test runners re-evaluate modules), and
 * every copy must see and set the one patch.
 */
const CHUNKED = Symbol.for("socket-server.chunkLocalBroadcasts");

/**
 * Writes a broadcast to this process's sockets `chunkSize` at a time, each
 * chunk in a tick of its own (`process.nextTick`), instead of all in one
 * synchronous loop. Why: every write keeps its buffers and callbacks alive
 * until the write's completion tick (`afterWriteTick`) runs, after the loop;
 * a 5,000-socket loop keeps megabytes alive through several scavenges of a
 * small young generation (WORKER_SEMI_SPACE_MB), which copy and then
 * promote them. Chunk by chunk, the completion ticks queued by one chunk run
 * before the next, and its garbage dies young. Measured on a fan-out to
 * 10k: a third less minor-GC time, 40% less old-space growth, 0.88x the
 * docs recipe's delivered/s instead of 0.78-0.81x (bench/RESULTS.md). Ticks,
 * not turns of the event loop: with `setImmediate` the gain was gone.
 * Each write of a one-packet text broadcast to a free websocket is the
 * frame itself, straight to the TCP socket (writeFrame): 1.08x the recipe.
 *
 * Order is kept: broadcasts go out one after the other, each whole before
 * the next starts (one queue per process); a broadcast that finds the queue
 * empty and has at most `chunkSize` recipients goes out at once, as before.
 * The recipients are the ones in the rooms when the broadcast was made.
 *
 * Replaces the private shape of socket.io-adapter's in-memory
 * `Adapter.prototype.broadcast` (2.5: `_encode` once, then `apply` with
 * `notifyOutgoingListeners` and `client.writeToEngine` per socket), which
 * every adapter here reaches (the cluster adapter's local delivery, the
 * session-aware adapter's `super.broadcast`), found in the prototype chain
 * of `adapter` (a namespace's adapter); broadcasts with acks keep the
 * library's code. Patches once per process; a later call changes the size.
 * False if the method's shape is not the one known.
 */
export function chunkLocalBroadcasts(adapter: object, chunkSize: number): boolean {
  // socket.io-adapter's in-memory Adapter, as this adapter inherits it (the
  // copy the adapter's package resolved, whichever that is).
  let proto = Object.getPrototypeOf(adapter) as
    | (Partial<InMemoryAdapter> & {
        broadcast?: (packet: { nsp?: string }, opts: { flags?: Record<string, unknown> }) => void;
        [CHUNKED]?: { size: number; broadcast: unknown };
      })
    | null;
  while (proto && !Object.hasOwn(proto, "_encode")) proto = Object.getPrototypeOf(proto);
  if (!proto) return false;
  const installed = proto[CHUNKED];
  // (A test runner that shares one process between test files has been seen
  // to put the library's method back under the mark: patch again then.)
  if (installed && proto.broadcast === installed.broadcast) {
    installed.size = chunkSize;
    return true;
  }
  if (typeof proto.broadcast !== "function" || typeof proto._encode !== "function") return false;
  if (!/_encode[\s\S]*apply[\s\S]*writeToEngine/.test(String(proto.broadcast))) return false;
  const state: { size: number; broadcast: unknown } = { size: chunkSize, broadcast: undefined };
  proto[CHUNKED] = state;
  const jobs: BroadcastJob[] = [];
  const drain = () => {
    let budget = state.size;
    while (budget > 0 && jobs.length > 0) {
      const job = jobs[0]!;
      const end = Math.min(job.sockets.length, job.next + budget);
      budget -= end - job.next;
      for (; job.next < end; job.next++) {
        const socket = job.sockets[job.next]!;
        socket.notifyOutgoingListeners?.(job.packet);
        if (job.frame === undefined || !writeFrame(socket.client.conn, job.frame)) {
          socket.client.writeToEngine(job.encoded, job.packetOpts);
        }
      }
      if (job.next === job.sockets.length) jobs.shift();
    }
    if (jobs.length > 0) process.nextTick(drain);
  };
  proto.broadcast = function (this: InMemoryAdapter, packet, opts) {
    const flags = opts.flags ?? {};
    const packetOpts: { wsPreEncodedFrame?: Buffer[] } & Record<string, unknown> = {
      preEncoded: true,
      volatile: flags["volatile"],
      compress: flags["compress"],
    };
    packet.nsp = this.nsp.name;
    const encoded = this._encode(packet, packetOpts);
    const pre = packetOpts.wsPreEncodedFrame;
    const frame = Array.isArray(pre) ? Buffer.concat(pre) : undefined;
    const sockets: BroadcastRecipient[] = [];
    this.apply(opts, (socket) => sockets.push(socket));
    jobs.push({ packet, encoded, packetOpts, frame, sockets, next: 0 });
    if (jobs.length === 1) drain();
  };
  state.broadcast = proto.broadcast;
  return true;
}

// ---- engine.io ----

/** What this server reads of an engine.io connection (`socket.conn`) beyond its typings. */
export interface EngineConnection {
  id: string;
  /** Private: packets waiting while the transport is busy (a websocket send not yet written, a polling client not polling). */
  writeBuffer: { data?: unknown }[];
  transport: {
    name: string;
    /** False while a write is in progress; engine.io emits "drain" when it is done. */
    writable: boolean;
    /** On websocket, the `ws` WebSocket (public API from there on). */
    socket?: { bufferedAmount?: number; terminate?: () => void };
    once(event: "drain", fn: () => void): unknown;
    off(event: "drain", fn: () => void): unknown;
  };
  /** The session's first HTTP request (typed, but only ever read by us to drop it). */
  request: unknown;
  close(discard?: boolean): void;
}

export function connectionOf(socket: { conn: object }): EngineConnection {
  return socket.conn as unknown as EngineConnection;
}

/** engine.io's open connections by id: the protected `clients`, a plain object. */
export function engineConnections(io: { engine: object }): Record<string, EngineConnection> {
  return (io.engine as unknown as { clients: Record<string, EngineConnection> }).clients;
}

/**
 * True when the transport is free, nothing waits in `writeBuffer` and, on
 * websocket, nothing in `ws`' buffers either (a broadcast's frame written
 * straight to the TCP socket leaves the transport free): the client is
 * keeping up.
 */
export function outputIdle(conn: EngineConnection): boolean {
  return (
    conn.transport.writable &&
    conn.writeBuffer.length === 0 &&
    !conn.transport.socket?.bufferedAmount
  );
}

/**
 * Output a connection holds for its client: engine.io's `writeBuffer`, plus,
 * on websocket, `ws`' `bufferedAmount` (bytes in its sender queue and in the
 * net.Socket, not yet taken by the kernel). Strings count by length.
 */
export function bufferedBytes(conn: EngineConnection): number {
  let n = 0;
  for (const p of conn.writeBuffer) n += packetBytes(p.data);
  if (conn.transport.name === "websocket") n += conn.transport.socket?.bufferedAmount ?? 0;
  return n;
}

function packetBytes(d: unknown): number {
  if (typeof d === "string") return d.length;
  if (d instanceof ArrayBuffer) return d.byteLength;
  if (ArrayBuffer.isView(d)) return d.byteLength;
  return 8;
}

/** Resolves when the transport has written its output ("drain"), or after `maxMs` (a transport may be replaced meanwhile). */
export function transportDrained(conn: EngineConnection, maxMs: number): Promise<void> {
  const transport = conn.transport;
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      transport.off("drain", done);
      resolve();
    };
    const timer = setTimeout(done, maxMs);
    transport.once("drain", done);
  });
}

/**
 * Lets go of a connection's handshake request. engine.io keeps it twice:
 * as `conn.request`, and, for a websocket upgrade, in the stand-in response
 * object it builds for middlewares (private `WebSocketResponse`, whose `req`
 * lives as long as the TCP socket's "close" listener). `middlewareRes` is
 * the response a middleware received for that request; a polling request's
 * is Node's own ServerResponse and is left alone.
 */
export function releaseHandshakeRequest(conn: EngineConnection, middlewareRes: unknown): void {
  if (middlewareRes && !(middlewareRes instanceof http.ServerResponse)) {
    (middlewareRes as { req: unknown }).req = null;
  }
  conn.request = null;
}
