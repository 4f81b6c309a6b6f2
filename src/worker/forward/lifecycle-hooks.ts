import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { GatewayHooks, GatewaySocket } from "../gateway/gateway.js";
import type { ForwardService } from "./forward-service.js";
import { roomsOf } from "../gateway/gateway.js";

/**
 * FORWARD_LIFECYCLE=true: the backend learns when a registered user's socket
 * comes and goes, as forwarded events named `connect` and `disconnect`
 * (names clients cannot use: Socket.IO reserves them), through the same
 * transport, retries and breaker as client events. Nobody waits for their
 * answer; a failure is logged at debug level.
 *
 * `connect` is sent right after the register ack, with payload
 * `{ connectedAt }`; `disconnect` with `{ reason }` and the rooms the socket
 * was in just before it left them.
 */
export function createLifecycleHooks(deps: {
  enabled: boolean;
  forwarder: Pick<ForwardService, "forwardLifecycle">;
  log: Logger;
}): GatewayHooks {
  if (!deps.enabled) return {};
  const log = deps.log.child({ module: "forward-lifecycle" });
  // Socket.IO empties socket.rooms before "disconnect"; keep them from "disconnecting".
  const lastRooms = new WeakMap<GatewaySocket, string[]>();
  // Shared by every socket (called with the socket as `this`); it runs once.
  function rememberRooms(this: GatewaySocket) {
    lastRooms.set(this, roomsOf(this));
  }

  const send = (socket: GatewaySocket, event: string, payload: unknown, rooms: string[]) => {
    const userId = socket.data.userId;
    if (!userId) return;
    deps.forwarder
      .forwardLifecycle({
        id: randomUUID(),
        event,
        payload,
        userId,
        socketId: socket.id,
        rooms,
        receivedAt: new Date().toISOString(),
      })
      .then(
        (reply) => {
          if (!reply.ok) log.debug({ event, code: reply.error.code }, "lifecycle event not taken");
        },
        (err: unknown) => log.debug({ err, event }, "lifecycle event failed"),
      );
  };

  return {
    afterRegister(socket) {
      socket.on("disconnecting", rememberRooms);
      send(
        socket,
        "connect",
        { connectedAt: new Date(socket.data.connectedAt).toISOString() },
        roomsOf(socket),
      );
    },
    onDisconnect(socket, reason) {
      send(socket, "disconnect", { reason }, lastRooms.get(socket) ?? []);
    },
  };
}
