import { randomUUID } from "node:crypto";
import http from "node:http";
import express from "express";
import { jwtVerify } from "jose";
import { Server } from "socket.io";
import { allowed, heartbeat, pushOf, tokenKey } from "./common.mjs";

/**
 * The work both baselines do, written the way a user of plain Socket.IO
 * would: verify the JWT in a middleware (inline, jose), `register` joins
 * `user:<id>`, `room:join` checks the token's rooms claim, and an express
 * `POST /api/push` with a bearer key emits to a user or a room. No drop of
 * `socket.request`, no tuning: Socket.IO's defaults.
 */

const refused = (code) => Object.assign(new Error("unauthorized"), { data: { code } });

export function attachSocketHandlers(io, key) {
  io.use(async (socket, next) => {
    const token = socket.handshake.auth?.token;
    if (typeof token !== "string") return next(refused("AUTH_MISSING"));
    try {
      const { payload } = await jwtVerify(token, key);
      socket.data.sub = payload.sub;
      socket.data.rooms = payload.rooms;
      next();
    } catch {
      next(refused("AUTH_INVALID"));
    }
  });
  io.on("connection", (socket) => {
    socket.on("register", (req, ack) => {
      const reply = typeof ack === "function" ? ack : () => {};
      if (req?.userId !== socket.data.sub)
        return reply({ ok: false, error: { code: "FORBIDDEN" } });
      socket.data.userId = req.userId;
      socket.join(`user:${req.userId}`);
      reply({ ok: true, userId: req.userId, rooms: [`user:${req.userId}`] });
    });
    socket.on("room:join", (req, ack) => {
      const reply = typeof ack === "function" ? ack : () => {};
      if (!socket.data.userId) return reply({ ok: false, error: { code: "NOT_REGISTERED" } });
      if (typeof req?.room !== "string" || !allowed(req.room, socket.data.rooms)) {
        return reply({ ok: false, error: { code: "FORBIDDEN" } });
      }
      socket.join(req.room);
      reply({ ok: true, room: req.room });
    });
  });
}

export function createPushApp(io, apiKey) {
  const app = express();
  app.get("/ready", (_req, res) => res.json({ status: "ready" }));
  app.use("/api", (req, res, next) => {
    if (req.headers.authorization !== `Bearer ${apiKey}`) {
      return res.status(401).json({ error: { code: "UNAUTHORIZED" } });
    }
    next();
  });
  app.post("/api/push", express.json({ limit: "1mb" }), (req, res) => {
    const push = pushOf(req.body);
    if (!push) return res.status(400).json({ error: { code: "VALIDATION_FAILED" } });
    io.to(push.room).emit(push.event, push.payload);
    res.status(202).json({ id: randomUUID() });
  });
  return app;
}

/**
 * One HTTP server with Socket.IO (the handlers above) and the push app, as
 * each baseline (or docs-cluster worker) serves them. `setup(io)` runs before
 * the handlers attach: the docs recipe's adapter and sticky worker.
 */
export function createBaselineServer(setup = () => {}) {
  const apiKey = process.env.API_KEYS?.split(",")[0];
  if (!apiKey) throw new Error("set API_KEYS");
  // The request handler must exist before Socket.IO attaches (it wraps it).
  let app;
  const httpServer = http.createServer((req, res) => app(req, res));
  const io = new Server(httpServer, heartbeat());
  setup(io);
  attachSocketHandlers(io, tokenKey(process.env));
  app = createPushApp(io, apiKey);
  return { httpServer, io };
}
