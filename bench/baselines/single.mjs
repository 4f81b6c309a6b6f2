import http from "node:http";
import { Server } from "socket.io";
import {
  attachSocketHandlers,
  createPushApp,
  heartbeat,
  printPorts,
  tokenKey,
} from "./baseline-app.mjs";

/**
 * Baseline: the plain single-process Socket.IO server a user would write,
 * doing the same work as socket-server (bench/baselines/baseline-app.mjs).
 * One port for Socket.IO and the push API. `PORT=0` picks a free port; the
 * chosen one is printed as a JSON line.
 */
const apiKey = process.env.API_KEYS?.split(",")[0];
if (!apiKey) throw new Error("set API_KEYS");

// The request handler must exist before Socket.IO attaches (it wraps it).
let app;
const server = http.createServer((req, res) => app(req, res));
const io = new Server(server, heartbeat());
attachSocketHandlers(io, tokenKey(process.env));
app = createPushApp(io, apiKey);

server.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? "127.0.0.1", () => {
  printPorts(server.address().port);
});
process.on("SIGTERM", () => {
  io.close();
  process.exit(0);
});
