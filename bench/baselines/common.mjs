import { createPublicKey } from "node:crypto";

/**
 * What every baseline shares, with no server library loaded (bare-ws.mjs
 * must stay bare): the token key, the rooms claim check, the push body, the
 * heartbeat settings and how a baseline announces its port.
 */

export function tokenKey(env) {
  if (env.JWT_PUBLIC_KEY) return createPublicKey(env.JWT_PUBLIC_KEY);
  if (env.JWT_SECRET) return new TextEncoder().encode(env.JWT_SECRET);
  throw new Error("set JWT_PUBLIC_KEY or JWT_SECRET");
}

/** Whether the token's rooms claim (names, or prefixes ending in `*`) allows `room`. */
export const allowed = (room, claims) =>
  Array.isArray(claims) &&
  claims.some((c) => c === room || (c.endsWith("*") && room.startsWith(c.slice(0, -1))));

/** A push body (`userId` or `room`, `event`, `payload`) → its room, or undefined if not valid. */
export function pushOf(body) {
  const { userId, room, event, payload } = body ?? {};
  if (typeof event !== "string" || (typeof userId !== "string" && typeof room !== "string")) return;
  return { room: typeof userId === "string" ? `user:${userId}` : room, event, payload };
}

/** Socket.IO's heartbeat defaults, unless the bench sets them (self-check does). */
export function heartbeat(env = process.env) {
  return {
    pingInterval: Number(env.PING_INTERVAL_MS) || 25_000,
    pingTimeout: Number(env.PING_TIMEOUT_MS) || 20_000,
  };
}

export function printPorts(port) {
  process.stdout.write(`${JSON.stringify({ msg: "ports", publicPort: port, apiPort: port })}\n`);
}

/** Listens on PORT (0: a free one) and HOST, then prints the port (printPorts). */
export function listen(httpServer) {
  httpServer.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? "127.0.0.1", () =>
    printPorts(httpServer.address().port),
  );
}
