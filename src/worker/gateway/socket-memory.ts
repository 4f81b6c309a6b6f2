import type http from "node:http";
import type { GatewayServer } from "./gateway.js";
import { connectionOf, releaseHandshakeRequest } from "../sio-internals.js";

/**
 * Lets go of what a connected socket no longer needs from its handshake, so
 * that idle connections cost less memory (bench/memory.mjs measures it).
 *
 * - The HTTP upgrade request: Socket.IO keeps it as `socket.conn.request`,
 *   and engine.io also keeps it through the response object it builds for
 *   middlewares, whose `close` listener on the TCP socket lives as long as
 *   the connection. Clearing only the first (as the Socket.IO docs suggest)
 *   frees nothing; both references are dropped here.
 * - `socket.handshake.headers`, `.query` and `.auth`: the same request's
 *   headers and query, and the token. They are read while the handshake is
 *   verified (gateway.ts), never after; what the gateway keeps is in
 *   `socket.data`. `handshake.address` and the rest stay.
 */

const MIDDLEWARE_RESPONSE = Symbol("middleware response");

export function trimSocketMemory(io: GatewayServer): void {
  // Engine.io middlewares receive the response object of an upgrade request too.
  io.engine.use((req: http.IncomingMessage, res: http.ServerResponse, next: () => void) => {
    (req as unknown as Record<symbol, unknown>)[MIDDLEWARE_RESPONSE] = res;
    next();
  });
  io.on("connection", (socket) => {
    const conn = connectionOf(socket);
    const req = conn.request as Record<symbol, unknown> | null;
    releaseHandshakeRequest(conn, req?.[MIDDLEWARE_RESPONSE]);
    socket.handshake.headers = {};
    socket.handshake.query = {};
    socket.handshake.auth = {};
  });
}
