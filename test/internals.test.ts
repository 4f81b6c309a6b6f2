import cluster from "node:cluster";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, type Socket } from "socket.io";
import { io as connectClient, type Socket as ClientSocket } from "socket.io-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  holdHandleReads,
  resumeHandleReads,
  setListenBacklog,
  startStalledRequestChecks,
  takeUnacknowledgedHandles,
} from "../src/shared/node-internals.js";
import {
  type AckFunction,
  ackIdCounter,
  bufferedBytes,
  chunkLocalBroadcasts,
  connectionOf,
  countOutgoingEvents,
  engineConnections,
  outputIdle,
  pendingAcks,
  releaseHandshakeRequest,
  transportDrained,
  wrapAckFunctions,
} from "../src/worker/sio-internals.js";
import { waitFor } from "./support/wait.js";

/**
 * Pins every private part of Socket.IO, engine.io and Node that src/ relies
 * on (src/worker/sio-internals.ts, src/shared/node-internals.ts) against the
 * installed versions, on real servers in this process: an upgrade that
 * changes one fails here.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function listen(server: net.Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

describe("Socket.IO and engine.io (sio-internals.ts)", () => {
  const httpServer = http.createServer();
  const io = new Server(httpServer, { perMessageDeflate: false });
  /** What engine.io middlewares received as the response, by request. */
  const middlewareRes = new WeakMap<http.IncomingMessage, unknown>();
  io.engine.use((req: http.IncomingMessage, res: unknown, next: () => void) => {
    middlewareRes.set(req, res);
    next();
  });
  let url = "";
  beforeAll(async () => {
    url = `http://127.0.0.1:${await listen(httpServer)}`;
  });
  afterAll(async () => {
    await io.close();
  });

  /** A client and the server's side of it. */
  async function pair(
    transport: "websocket" | "polling" = "websocket",
  ): Promise<{ s: Socket; c: ClientSocket }> {
    const accepted = new Promise<Socket>((resolve) => io.once("connection", resolve));
    const c = connectClient(url, { transports: [transport], forceNew: true, reconnection: false });
    cleanups.push(() => c.close());
    const s = await accepted;
    if (!c.connected) await new Promise<void>((r) => c.once("connect", () => r()));
    return { s, c };
  }

  it("socket.acks holds the callbacks of emits with an ack, keyed by ids from nsp._ids, until answered", async () => {
    const { s, c } = await pair();
    const acks = pendingAcks(s);
    expect(acks).toBeInstanceOf(Map);
    expect(acks.size).toBe(0);
    const answers: ((v: unknown) => void)[] = [];
    c.on("ask", (_n: number, cb: (v: unknown) => void) => answers.push(cb));

    const first = ackIdCounter(io.of("/"));
    expect(typeof first).toBe("number");
    const one = new Promise((r) => s.emit("ask", 1, r));
    // A broadcast with an ack takes its id from the same counter (push/acks.ts).
    const two = new Promise((r) =>
      io.timeout(5_000).emit("ask", 2, (_err: unknown, replies: unknown) => r(replies)),
    );
    expect(ackIdCounter(io.of("/"))).toBe(first + 2);
    expect([...acks.keys()]).toEqual([first, first + 1]);

    await waitFor("both asks", async () => (answers.length === 2 ? true : undefined));
    answers[0]!("a");
    answers[1]!("b");
    expect(await one).toBe("a");
    expect(await two).toEqual(["b"]);
    expect(acks.size).toBe(0);
  });

  it("Socket.prototype.ack builds the ack function a handler receives", async () => {
    const sent: unknown[][] = [];
    expect(
      wrapAckFunctions((send: AckFunction) => (...args) => {
        sent.push(args);
        send(...args);
      }),
    ).toBe(true);
    const { s, c } = await pair();
    s.on("q", (cb: (v: unknown) => void) => cb({ ok: false, error: { code: "X" } }));
    expect(await c.emitWithAck("q")).toEqual({ ok: false, error: { code: "X" } });
    expect(sent).toEqual([[{ ok: false, error: { code: "X" } }]]);
  });

  it("Socket.prototype.notifyOutgoingListeners runs once per recipient, with one packet per broadcast", async () => {
    const runs: [unknown, number][] = [];
    const flush = countOutgoingEvents((event, n) => {
      if (typeof event === "string" && event.startsWith("pin:")) runs.push([event, n]);
    });
    expect(flush).toBeTypeOf("function");
    const pairs = [await pair(), await pair(), await pair()];
    const got = (event: string, n: number) =>
      Promise.all(pairs.slice(0, n).map(({ c }) => new Promise((r) => c.once(event, r))));
    for (const { s } of pairs) s.join("pin-room");
    const all = got("pin:all", 3);
    io.to("pin-room").emit("pin:all", 1);
    await all;
    const one = got("pin:one", 1);
    pairs[0]!.s.emit("pin:one", 2);
    await one;
    const again = got("pin:all", 3);
    io.to("pin-room").emit("pin:all", 3);
    await again;
    flush!();
    expect(runs).toEqual([
      ["pin:all", 3],
      ["pin:one", 1],
      ["pin:all", 3],
    ]);
  });

  it("a local broadcast goes out a chunk per tick, whole and in order, one broadcast after another", async () => {
    // The patch is once per process (on the adapter class's prototype); the
    // size is the last one asked for (createWorker asks for 500, and
    // in-process servers of other files may still start one in this
    // process: set right before each broadcast).
    const adapter = io.of("/").adapter;
    const chunksOf3 = () => expect(chunkLocalBroadcasts(adapter, 3)).toBe(true);
    cleanups.push(() => chunkLocalBroadcasts(adapter, 500));
    const pairs: Awaited<ReturnType<typeof pair>>[] = [];
    for (let i = 0; i < 8; i++) pairs.push(await pair());
    /**
     * Which server socket was written to, in order, as "<event>:<index>":
     * a broadcast calls notifyOutgoingListeners just before each write.
     */
    const written: string[] = [];
    const got = pairs.map(() => [] as string[]);
    pairs.forEach(({ s, c }, i) => {
      s.join("chunk-room");
      const socket = s as unknown as { notifyOutgoingListeners: (p: { data: unknown[] }) => void };
      const notify = socket.notifyOutgoingListeners.bind(s);
      socket.notifyOutgoingListeners = (packet) => {
        written.push(`${String(packet.data[0])}:${i}`);
        notify(packet);
      };
      c.onAny((event: string) => got[i]!.push(event));
    });
    const turn = () => new Promise((r) => setImmediate(r));

    // Up to the chunk size with nothing queued: at once, as the library does.
    chunksOf3();
    io.to(pairs[0]!.s.id).emit("chunk:alone");
    expect(written).toEqual(["chunk:alone:0"]);
    written.length = 0;

    // 8 recipients: 3 now, the rest in later ticks.
    chunksOf3();
    io.to("chunk-room").emit("chunk:big", { n: 1 });
    expect(written).toHaveLength(3);
    // A one-socket broadcast made meanwhile waits for the big one to finish.
    io.to(pairs[7]!.s.id).emit("chunk:after");
    expect(written).toHaveLength(3);
    // A recipient that goes away between chunks is skipped without harm.
    pairs[6]!.s.disconnect(true);
    await turn();
    expect(written).toEqual([
      ...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => `chunk:big:${i}`),
      "chunk:after:7",
    ]);

    await waitFor("every client's events", async () =>
      got.every((g, i) => i === 6 || g.length >= (i === 0 ? 2 : i === 7 ? 2 : 1))
        ? true
        : undefined,
    );
    expect(got[0]).toEqual(["chunk:alone", "chunk:big"]);
    expect(got[3]).toEqual(["chunk:big"]);
    expect(got[6]).toEqual([]);
    expect(got[7]).toEqual(["chunk:big", "chunk:after"]);
  });

  it("a broadcast's frame goes straight to a free websocket's TCP socket, in order with engine.io's writes", async () => {
    // Set right before each broadcast, as in the test above.
    const patched = () => expect(chunkLocalBroadcasts(io.of("/").adapter, 500)).toBe(true);
    const { s, c } = await pair();
    s.join("frame-room");
    const got: unknown[] = [];
    c.on("f", (n: unknown) => got.push(n));
    // What the fast path reads of ws (writeFrame in sio-internals.ts).
    const conn = connectionOf(s) as unknown as {
      transport: { socket: { _sender: { _state: number; _queue: unknown[] }; _socket: object } };
    };
    const ws = conn.transport.socket;
    expect(ws._sender._state).toBe(0);
    expect(ws._sender._queue).toEqual([]);
    expect(ws._socket).toBeInstanceOf(net.Socket);
    /** Broadcasts that went through engine.io instead. */
    let viaEngine = 0;
    const client = s.client as unknown as { writeToEngine: (e: unknown, o: unknown) => void };
    const write = client.writeToEngine.bind(client);
    client.writeToEngine = (encoded, opts) => {
      if ((opts as { preEncoded?: boolean }).preEncoded) viaEngine++;
      write(encoded, opts);
    };

    const idle = () =>
      waitFor("the output written", async () => (outputIdle(s.conn as never) ? true : undefined));
    s.emit("f", 1);
    await idle(); // written: the transport is free again
    patched();
    io.to("frame-room").emit("f", 2); // straight to the TCP socket
    expect(viaEngine).toBe(0);
    s.emit("f", 3); // engine.io, after it
    io.to("frame-room").emit("f", { four: "é✓" }); // the transport is busy: engine.io, queued behind 3
    expect(viaEngine).toBe(1);
    await waitFor("four events", async () => (got.length === 4 ? true : undefined));
    expect(got).toEqual([1, 2, 3, { four: "é✓" }]);
    await idle();
    // A binary payload has no pre-encoded frame: engine.io.
    patched();
    io.to("frame-room").emit("f", Buffer.from([1, 2]));
    expect(viaEngine).toBe(2);
    await waitFor("the binary one", async () => (got.length === 5 ? true : undefined));
    // Polling: engine.io.
    const p = await pair("polling");
    const polled = new Promise((r) => p.c.once("f", r));
    patched();
    io.to(p.s.id).emit("f", 6);
    expect(await polled).toBe(6);
  });

  it("engine.clients holds every open connection by id, as socket.conn", async () => {
    const { s, c } = await pair();
    const conn = connectionOf(s);
    expect(conn).toBe(s.conn);
    expect(engineConnections(io)[conn.id]).toBe(conn);
    c.close();
    await waitFor("the connection closed", async () =>
      engineConnections(io)[conn.id] ? undefined : true,
    );
  });

  it("writeBuffer queues packets while a websocket write is in progress; the transport emits drain", async () => {
    const { s } = await pair();
    const conn = connectionOf(s);
    expect(Array.isArray(conn.writeBuffer)).toBe(true);
    expect(conn.transport.name).toBe("websocket");
    expect(typeof conn.transport.socket?.bufferedAmount).toBe("number");
    expect(typeof conn.transport.socket?.terminate).toBe("function");
    expect(outputIdle(conn)).toBe(true);
    expect(bufferedBytes(conn)).toBe(0);

    // The first is handed to ws at once (the transport turns unwritable), the second waits.
    s.emit("big", "x".repeat(1_000));
    s.emit("big", "y".repeat(1_000));
    expect(conn.transport.writable).toBe(false);
    expect(conn.writeBuffer.length).toBe(1);
    expect(typeof conn.writeBuffer[0]!.data).toBe("string");
    expect(outputIdle(conn)).toBe(false);
    expect(bufferedBytes(conn)).toBeGreaterThanOrEqual(1_000);

    const t0 = Date.now();
    await transportDrained(conn, 10_000);
    expect(Date.now() - t0).toBeLessThan(5_000); // the event, not the timer
    await waitFor("the output written", async () => (outputIdle(conn) ? true : undefined));
  });

  it("a websocket upgrade keeps its request in conn.request and in the stand-in response middlewares get", async () => {
    const { s } = await pair("websocket");
    const conn = connectionOf(s);
    const req = conn.request as http.IncomingMessage;
    expect(req).toBeInstanceOf(http.IncomingMessage);
    const res = middlewareRes.get(req) as { req?: unknown };
    expect(res).toBeDefined();
    expect(res).not.toBeInstanceOf(http.ServerResponse);
    expect(res.req).toBe(req);
    releaseHandshakeRequest(conn, res);
    expect(res.req).toBeNull();
    expect(conn.request).toBeNull();
  });

  it("a polling handshake's middlewares get Node's own response, which is left alone", async () => {
    const { s } = await pair("polling");
    const conn = connectionOf(s);
    const req = conn.request as http.IncomingMessage;
    const res = middlewareRes.get(req);
    expect(res).toBeInstanceOf(http.ServerResponse);
    releaseHandshakeRequest(conn, res);
    expect((res as http.ServerResponse).req).toBe(req);
    expect(conn.request).toBeNull();
  });
});

describe("Node (node-internals.ts)", () => {
  async function socketPair(): Promise<{ server: net.Socket; client: net.Socket }> {
    const srv = net.createServer();
    const port = await listen(srv);
    const accepted = once(srv, "connection") as Promise<[net.Socket]>;
    const client = net.connect(port, "127.0.0.1");
    const [server] = await accepted;
    cleanups.push(() => {
      client.destroy();
      server.destroy();
      srv.close();
    });
    return { server, client };
  }

  it("a listening socket's backlog can be set again through its _handle (a received net.Server listens with 511)", async () => {
    const { execFileSync } = await import("node:child_process");
    const backlogOf = (port: number) => {
      // `ss -ltn`: for a listening socket, Send-Q is the backlog.
      const line = execFileSync("ss", ["-ltnH", `sport = :${port}`], { encoding: "utf8" }).trim();
      return Number(line.split(/\s+/)[2]);
    };
    const srv = net.createServer();
    cleanups.push(() => srv.close());
    await new Promise<void>((resolve) =>
      srv.listen({ port: 0, host: "127.0.0.1", backlog: 64 }, resolve),
    );
    const { port } = srv.address() as AddressInfo;
    expect(backlogOf(port)).toBe(64);
    expect(setListenBacklog(srv, 1000)).toBe(0);
    expect(backlogOf(port)).toBe(1000);
    // And it still accepts.
    const accepted = once(srv, "connection") as Promise<[net.Socket]>;
    const client = net.connect(port, "127.0.0.1");
    const [conn] = await accepted;
    client.destroy();
    conn.destroy();
  });

  it("a socket's _handle has readStop, and net's _read() does not restart reading while _handle.reading is set", async () => {
    const { server, client } = await socketPair();
    const handle = (server as unknown as { _handle: { readStop?: unknown; reading?: unknown } })
      ._handle;
    expect(typeof handle.readStop).toBe("function");
    expect(typeof handle.reading).toBe("boolean");

    holdHandleReads(server);
    server.read(0); // what net's stream machinery does on a later tick: calls _read()
    client.write("hello");
    await sleep(200); // nothing to await: the point is that nothing arrives
    expect(server.bytesRead).toBe(0);
    expect(server.readableLength).toBe(0);
  });

  it("reads resume on a socket held in its 'data' handler (as the balancer does)", async () => {
    const { server, client } = await socketPair();
    const got: Buffer[] = [];
    server.once("data", (first: Buffer) => {
      got.push(first);
      holdHandleReads(server);
      resumeHandleReads(server); // a request the primary serves itself
      server.on("data", (b: Buffer) => got.push(b));
      client.write(" world");
    });
    client.write("hello");
    await waitFor("the bytes", async () => (got.length > 1 ? true : undefined));
    expect(Buffer.concat(got).toString()).toBe("hello world");
  });

  it("a cluster worker's channel keeps the handle in flight in _pendingMessage and queues later ones in _handleQueue", async () => {
    // A worker whose event loop never turns: it cannot acknowledge a handle.
    const dir = mkdtempSync(join(tmpdir(), "internals-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const script = join(dir, "stuck-worker.mjs");
    writeFileSync(script, "const end = Date.now() + 30_000;\nwhile (Date.now() < end) {}\n");
    cluster.setupPrimary({ exec: script, execArgv: [], serialization: "advanced", silent: true });
    const worker = cluster.fork();
    cleanups.push(() => worker.process.kill("SIGKILL"));

    const a = await socketPair();
    const b = await socketPair();
    const inFlightHandle = (a.server as unknown as { _handle: unknown })._handle;
    expect(worker.send({ t: "first" }, a.server)).toBe(true);
    worker.send({ t: "second" }, b.server);
    // As in the primary (handoff.ts): the worker dies, its exit is seen, then they are taken back.
    const exited = once(worker, "exit");
    worker.process.kill("SIGKILL");
    await exited;

    const taken = takeUnacknowledgedHandles(worker.process);
    expect(taken.inFlight).toBe(inFlightHandle);
    expect(typeof taken.inFlight?.close).toBe("function");
    expect(taken.queued).toHaveLength(1);
    expect(taken.queued[0]!.message).toEqual({ t: "second" });
    expect(taken.queued[0]!.handle).toBe(b.server);
    // Cleared: the channel no longer waits for the dead worker's ack.
    expect(takeUnacknowledgedHandles(worker.process)).toEqual({ queued: [] });
    taken.inFlight!.close();
    await once(a.client, "close");
  });

  it("a net.Server sent to a cluster worker stays open in the sender; closing one copy resets no queued connection", async () => {
    // src/primary/listeners.ts: listening sockets travel between the primary
    // and its workers, each side closing its copy only once the other has it.
    // child_process sends a net.Server's handle without closing it (only a
    // sent net.Socket is closed on the ack), and the receiver gets a
    // net.Server listening on the same socket (`server.listen(handle)`).
    const dir = mkdtempSync(join(tmpdir(), "internals-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const script = join(dir, "server-worker.mjs");
    writeFileSync(
      script,
      [
        'import net from "node:net";',
        "process.on('message', (m, server) => {",
        "  if (m === 'take' && server instanceof net.Server) {",
        "    server.on('connection', (c) => c.end('worker'));",
        "    process.send({ listening: server.listening, port: server.address().port });",
        "  }",
        "  if (m === 'stall') { const end = Date.now() + 500; while (Date.now() < end) {} }",
        "});",
        "process.send('ready');",
        "",
      ].join("\n"),
    );
    cluster.setupPrimary({ exec: script, execArgv: [], serialization: "advanced", silent: true });
    const worker = cluster.fork();
    cleanups.push(() => worker.process.kill("SIGKILL"));
    const server = net.createServer((c) => c.end("primary"));
    const port = await listen(server);
    cleanups.push(() => server.close());
    await once(worker, "message"); // ready
    worker.send("take", server);
    const [taken] = (await once(worker, "message")) as [{ listening: boolean; port: number }];
    expect(taken).toEqual({ listening: true, port });
    expect(server.listening).toBe(true);

    // Connections queue while the worker is stalled, and the primary closes
    // its copy before its own event loop could accept any of them.
    worker.send("stall");
    await sleep(50);
    const answers = Array.from(
      { length: 10 },
      () =>
        new Promise<string>((resolve) => {
          const c = net.connect(port, "127.0.0.1");
          let got = "";
          c.on("data", (b: Buffer) => (got += b.toString()));
          c.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
          c.on("close", () => resolve(got));
        }),
    );
    // net.connect() issues connect(2) on the next tick; this tick comes after them.
    process.nextTick(() => {
      const end = Date.now() + 100;
      while (Date.now() < end) {} // the kernel completes the handshakes into the queue
      server.close();
    });
    expect(await Promise.all(answers)).toEqual(Array(10).fill("worker"));
  });

  it("an HTTP server that never listened closes stalled requests at connectionsCheckingInterval", async () => {
    const httpServer = http.createServer((_req, res) => res.end("ok"));
    httpServer.headersTimeout = 300;
    httpServer.requestTimeout = 300;
    startStalledRequestChecks(httpServer, 100);
    expect(httpServer.listening).toBe(false);
    cleanups.push(() => httpServer.close());
    const front = net.createServer((socket) => httpServer.emit("connection", socket));
    const port = await listen(front);
    cleanups.push(() => front.close());

    const client = net.connect(port, "127.0.0.1");
    cleanups.push(() => client.destroy());
    let answer = "";
    client.on("data", (b: Buffer) => {
      answer += b.toString();
    });
    const t0 = Date.now();
    client.write("GET / HTTP/1.1\r\nHost: x\r\n"); // and never the end of the headers
    await once(client, "close", { signal: AbortSignal.timeout(5_000) });
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });
});
