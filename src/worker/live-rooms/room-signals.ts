import type { Config } from "../../shared/config.js";
import { type AckError, ackError } from "../../shared/errors.js";
import { ROOM_SIGNAL_EVENT, type RoomSignal } from "../../shared/events.js";
import { metrics } from "../../shared/metrics.js";
import { inRoomList, isValidEventName, isValidRoom } from "../../shared/names.js";
import type { GatewayServer, GatewaySocket } from "../gateway/gateway.js";

/**
 * `room:signal` (SIGNAL_ROOMS): ephemeral events from a member to the rest
 * of a room — typing indicators, cursors — relayed by the worker itself and
 * never forwarded to the backend. The relay is a volatile room emit that
 * skips the sender's socket (its other tabs get it); the cluster adapter
 * and, between hosts, the hosts adapter carry it like any room emit.
 *
 * The per-socket rate (SIGNAL_RATE_PER_SECOND, its own bucket) is the event
 * guard's (gateway/event-guard.ts), which answers RATE_LIMITED before this
 * handler runs.
 */

type Refusal = { code: string; ack: AckError };

function refuse(code: AckError["error"]["code"], message: string): Refusal {
  return { code, ack: ackError(code, message) };
}

/** Why this signal may not go out, or the signal to relay. */
function check(socket: GatewaySocket, req: unknown, cfg: Config): Refusal | RoomSignal {
  const userId = socket.data.userId;
  if (!userId) return refuse("NOT_REGISTERED", "register first");
  const { room, name, data } = (req ?? {}) as { room?: unknown; name?: unknown; data?: unknown };
  if (!isValidRoom(room, cfg.MAX_ROOM_NAME_LENGTH)) {
    return refuse("INVALID_PAYLOAD", "needs { room, name, data? } with a valid room name");
  }
  if (!inRoomList(room, cfg.SIGNAL_ROOMS)) {
    return refuse("FORBIDDEN", "this room does not relay signals (SIGNAL_ROOMS)");
  }
  if (!socket.rooms.has(room)) return refuse("FORBIDDEN", "only a member of the room may signal");
  if (!isValidEventName(name, cfg.MAX_EVENT_NAME_LENGTH)) {
    return refuse("INVALID_PAYLOAD", "name: not a valid event name");
  }
  const bytes = data === undefined ? 0 : Buffer.byteLength(JSON.stringify(data));
  if (bytes > cfg.SIGNAL_MAX_BYTES) {
    return refuse(
      "PAYLOAD_TOO_LARGE",
      `data: ${bytes} bytes of JSON, at most ${cfg.SIGNAL_MAX_BYTES} (SIGNAL_MAX_BYTES)`,
    );
  }
  return { room, name, ...(data === undefined ? {} : { data }), from: userId };
}

export function attachRoomSignals(deps: { io: GatewayServer; cfg: Config }): void {
  const { io, cfg } = deps;
  // Shared by every socket: Socket.IO calls it with the socket as `this`.
  function onSignal(this: GatewaySocket, req: unknown, ack?: unknown) {
    const reply = typeof ack === "function" ? (ack as (res: unknown) => void) : () => {};
    const signal = check(this, req, cfg);
    if ("ack" in signal) {
      metrics.signals.inc({ outcome: signal.code.toLowerCase() });
      return reply(signal.ack);
    }
    this.to(signal.room).volatile.emit(ROOM_SIGNAL_EVENT, signal);
    metrics.signals.inc({ outcome: "relayed" });
    reply({ ok: true });
  }
  io.on("connection", (socket) => {
    socket.on(ROOM_SIGNAL_EVENT, onSignal);
  });
}
