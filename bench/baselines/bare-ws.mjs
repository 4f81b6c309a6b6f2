import { randomUUID } from "node:crypto";
import http from "node:http";
import { jwtVerify } from "jose";
import { WebSocketServer } from "ws";
import { allowed, heartbeat, listen, pushOf, tokenKey } from "./common.mjs";

/**
 * Baseline: the floor. One process, the `ws` library and nothing else —
 * what "close to a bare ws server" is measured against. It does the same
 * work as the other baselines (JWT check at connect, `register`, `room:join`
 * with the rooms claim, `POST /api/push` to a user or a room) and speaks just
 * enough of the Engine.IO v4 / Socket.IO v4 wire format over a websocket for
 * the bench client: the open packet, the namespace CONNECT, events with
 * acks, the heartbeat. No polling, no namespaces, no adapter, no binary
 * packets, no per-socket state beyond two sets; nobody would ship this, but
 * no Socket.IO server can cost less.
 */

const { pingInterval, pingTimeout } = heartbeat();
const apiKey = process.env.API_KEYS?.split(",")[0];
if (!apiKey) throw new Error("set API_KEYS");
const key = tokenKey(process.env);

/** Room name → open sockets; `user:<id>` is a room like any other. */
const rooms = new Map();

function join(ws, room) {
  const set = rooms.get(room) ?? new Set();
  rooms.set(room, set);
  set.add(ws);
  ws.rooms.push(room);
}

function leaveAll(ws) {
  for (const room of ws.rooms) {
    const set = rooms.get(room);
    set?.delete(ws);
    if (set?.size === 0) rooms.delete(room);
  }
}

/** `42<id>["event", payload]` → reply through `43<id>[answer]`. */
function onEvent(ws, text) {
  let i = 2;
  while (text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
  const id = text.slice(2, i);
  let args;
  try {
    args = JSON.parse(text.slice(i));
  } catch {
    return;
  }
  const reply = (answer) => id && ws.send(`43${id}${JSON.stringify([answer])}`);
  const [event, req] = args;
  if (event === "register") {
    if (req?.userId !== ws.sub) return reply({ ok: false, error: { code: "FORBIDDEN" } });
    ws.userId = req.userId;
    join(ws, `user:${req.userId}`);
    reply({ ok: true, userId: req.userId, rooms: [`user:${req.userId}`] });
  } else if (event === "room:join") {
    if (!ws.userId) return reply({ ok: false, error: { code: "NOT_REGISTERED" } });
    if (typeof req?.room !== "string" || !allowed(req.room, ws.claims)) {
      return reply({ ok: false, error: { code: "FORBIDDEN" } });
    }
    join(ws, req.room);
    reply({ ok: true, room: req.room });
  }
}

async function onConnect(ws, text) {
  let token;
  try {
    token = JSON.parse(text.slice(2) || "{}").token;
  } catch {}
  const refuse = (code) =>
    ws.send(`44${JSON.stringify({ message: "unauthorized", data: { code } })}`);
  if (typeof token !== "string") return refuse("AUTH_MISSING");
  try {
    const { payload } = await jwtVerify(token, key);
    ws.sub = payload.sub;
    ws.claims = payload.rooms;
    ws.connected = true;
    ws.send(`40${JSON.stringify({ sid: randomUUID() })}`);
  } catch {
    refuse("AUTH_INVALID");
  }
}

const httpServer = http.createServer((req, res) => {
  const json = (status, body) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (req.url === "/ready") return json(200, { status: "ready" });
  if (req.headers.authorization !== `Bearer ${apiKey}`) {
    return json(401, { error: { code: "UNAUTHORIZED" } });
  }
  if (req.method !== "POST" || req.url !== "/api/push")
    return json(404, { error: { code: "NOT_FOUND" } });
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return json(400, { error: { code: "INVALID_JSON" } });
    }
    const push = pushOf(body);
    if (!push) return json(400, { error: { code: "VALIDATION_FAILED" } });
    const { event, payload } = push;
    const packet = `42${JSON.stringify(payload === undefined ? [event] : [event, payload])}`;
    for (const ws of rooms.get(push.room) ?? []) ws.send(packet);
    json(202, { id: randomUUID() });
  });
});

const wss = new WebSocketServer({
  server: httpServer,
  path: "/socket.io/",
  perMessageDeflate: false,
});
wss.on("connection", (ws) => {
  ws.rooms = [];
  ws.alive = true;
  ws.send(
    `0${JSON.stringify({ sid: randomUUID(), upgrades: [], pingInterval, pingTimeout, maxPayload: 1e6 })}`,
  );
  ws.on("message", (data) => {
    const text = data.toString();
    if (text === "3") ws.alive = true;
    else if (text.startsWith("40")) onConnect(ws, text);
    else if (text.startsWith("42") && ws.connected) onEvent(ws, text);
    else if (text.startsWith("41") || text === "1") ws.close();
  });
  ws.on("close", () => leaveAll(ws));
  ws.on("error", () => {});
});

// Engine.IO v4: the server pings; a socket that did not answer the last one is dropped.
const pinger = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.alive) {
      ws.terminate();
      continue;
    }
    ws.alive = false;
    ws.send("2");
  }
}, pingInterval);

listen(httpServer);
process.on("SIGTERM", () => {
  clearInterval(pinger);
  for (const ws of wss.clients) ws.terminate();
  process.exit(0);
});
