import http from "node:http";
import net from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { type Balancer, createBalancer } from "../src/primary/balancer.js";
import { waitFor } from "./support/wait.js";

// The primary's balancer on real sockets. A connection handed to a worker
// may wait in the IPC channel's queue (behind the previous handle's
// acknowledgement) and stays open in the primary until the worker
// acknowledges it. Whatever the primary reads from it meanwhile is lost: in a
// connect storm that was a client's Socket.IO CONNECT, 1 in ~50,000.

const REQUEST_LINE = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let balancer: Balancer | undefined;
const clients: net.Socket[] = [];
const servers: net.Server[] = [];
afterEach(async () => {
  for (const c of clients) c.destroy();
  clients.length = 0;
  for (const s of servers.splice(0)) s.close();
  balancer = undefined;
});

function build(over: Partial<Parameters<typeof createBalancer>[0]>): Balancer {
  return createBalancer({
    log: pino({ level: "silent" }),
    handOff: () => true,
    eligibleSlots: () => [0],
    liveSlots: () => new Set([0]),
    serveLocally: () => {},
    isPrimaryPath: () => false,
    ...over,
  });
}

/** A listening socket the primary holds, routed by the balancer. */
async function start(over: Partial<Parameters<typeof createBalancer>[0]>): Promise<number> {
  balancer = build(over);
  const server = net.createServer();
  servers.push(server);
  balancer.attach("public", server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as net.AddressInfo).port;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port, host: "127.0.0.1" }, () => resolve(c));
    c.once("error", reject);
    clients.push(c);
  });
}

describe("balancer", () => {
  it("reads nothing more from a connection it handed off, however long the hand-off waits", async () => {
    const handed: net.Socket[] = [];
    const port = await start({
      // Taken, not yet sent: as when the channel still waits for an earlier ack.
      handOff: (_slot, _port, socket) => handed.push(socket) > 0,
    });
    const client = await connect(port);
    client.write(`${REQUEST_LINE}Host: x\r\n`);
    const socket = await waitFor("the hand-off", async () => handed[0]);
    const readAtHandOff = socket.bytesRead;
    // Net's stream machinery runs on the next ticks; the client then goes on
    // (the rest of its headers, later its CONNECT).
    await sleep(50);
    client.write("Upgrade: websocket\r\n\r\n40{}");
    await sleep(200);
    expect(socket.bytesRead).toBe(readAtHandOff);
    expect(socket.readableLength).toBe(0);
  });

  it("reads again from a connection the primary serves itself", async () => {
    const local = http.createServer((_req, res) => res.end("ok"));
    const port = await start({
      isPrimaryPath: (_port, _method, path) => path === "/health",
      serveLocally: (socket, head) => {
        local.emit("connection", socket);
        socket.emit("data", head);
        socket.resume();
      },
    });
    const client = await connect(port);
    let answer = "";
    client.on("data", (c: Buffer) => (answer += c.toString()));
    // The headers come after the request line, so the primary must read them.
    client.write("GET /health HTTP/1.1\r\n");
    await sleep(50);
    client.write("Host: x\r\nConnection: close\r\n\r\n");
    await waitFor("the answer", async () => (answer.endsWith("ok") ? answer : undefined));
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
  });

  it("answers 503 in the contract's error format when no worker can take the connection", async () => {
    const port = await start({ eligibleSlots: () => [], liveSlots: () => new Set() });
    const res = await fetch(`http://127.0.0.1:${port}/socket.io/?EIO=4&transport=polling`);
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(body.error).toMatchObject({
      code: "OVERLOADED",
      requestId: res.headers.get("x-request-id"),
    });
    expect(Number.isNaN(Date.parse(String(body.error["timestamp"])))).toBe(false);
  });

  it("accept(): a relayed connection goes to its session's owner, a new one to another worker than the relaying one", async () => {
    const handed: { slot: number; head: string }[] = [];
    const relayed = build({
      eligibleSlots: () => [0, 1],
      liveSlots: () => new Set([0, 1]),
      handOff: (slot, _port, _socket, head) => handed.push({ slot, head: head.toString() }) > 0,
    });
    // The sockets a worker relays: a pair of connected ones stands in for them.
    const pair = async () => {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const accepted = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
      await connect((server.address() as net.AddressInfo).port);
      return accepted;
    };
    const owned = "GET /socket.io/?EIO=4&transport=polling&sid=1_abc HTTP/1.1\r\nHost: x\r\n";
    for (let i = 0; i < 4; i++) relayed.accept("public", await pair(), Buffer.from(owned), 0);
    const fresh = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n";
    for (let i = 0; i < 4; i++) relayed.accept("public", await pair(), Buffer.from(fresh), 0);
    expect(handed.map((h) => h.slot)).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    expect(handed[0]!.head).toBe(owned);
    expect(handed[4]!.head).toBe(fresh);
    // No other worker takes new sessions: the relaying one gets it back (and refuses it if it must).
    const alone = build({
      eligibleSlots: () => [0],
      handOff: (slot) => handed.push({ slot, head: "" }) > 0,
    });
    alone.accept("public", await pair(), Buffer.from(fresh), 0);
    expect(handed.at(-1)!.slot).toBe(0);
    // Bytes without a complete request line: nothing to route by.
    const cut = await pair();
    relayed.accept("public", cut, Buffer.from("GET /socket.io/"), 0);
    expect(cut.destroyed).toBe(true);
  });
});
