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
afterEach(async () => {
  for (const c of clients) c.destroy();
  clients.length = 0;
  await balancer?.close();
  balancer = undefined;
});

async function start(over: Partial<Parameters<typeof createBalancer>[0]>) {
  balancer = createBalancer({
    log: pino({ level: "silent" }),
    handOff: () => true,
    eligibleSlots: () => [0],
    liveSlots: () => new Set([0]),
    serveLocally: () => {},
    isPrimaryPath: () => false,
    ...over,
  });
  return balancer.listen("public", 0, "127.0.0.1");
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
});
