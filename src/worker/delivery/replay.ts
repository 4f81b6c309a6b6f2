import type { Logger } from "pino";
import { metrics } from "../../shared/metrics.js";
import type { GatewayHooks, GatewaySocket } from "../gateway.js";
import { bufferedBytes, connectionOf, transportDrained } from "../sio-internals.js";
import type { DeliveryStore, TakenMessages } from "./delivery-store.js";

/**
 * Replays a user's stored pushes on `register`. The gateway has already put
 * the socket in the user's room when these hooks run; taking the messages
 * only after that is what closes the race with a push that finds the user
 * offline (see pipeline.ts: it stores, then looks again).
 *
 * Before the ack: take the messages (atomic in the store: of two tabs
 * registering at once, one gets them) and report their number as
 * `replayed`. After the ack: write them to this socket, oldest first, then
 * confirm. The writes are paced by the socket's output buffer, so a long
 * backlog of large payloads does not trip the slow-consumer limit; if the
 * socket goes away meanwhile, what was not written goes back to the store.
 */

const MAX_REPLAY_MS = 30_000;

export function createReplayHooks(deps: {
  store: DeliveryStore;
  log: Logger;
  /** Pause the replay while the socket holds more than this (half the slow-consumer limit). */
  highWaterBytes: number;
}): GatewayHooks {
  const log = deps.log.child({ module: "replay" });
  const taken = new WeakMap<GatewaySocket, TakenMessages>();

  async function write(socket: GatewaySocket, t: TakenMessages): Promise<number> {
    const deadline = Date.now() + MAX_REPLAY_MS;
    let written = 0;
    // Paced by the socket's output: engine.io's queue plus ws' send buffer.
    const conn = connectionOf(socket);
    for (const m of t.messages) {
      while (
        socket.connected &&
        bufferedBytes(conn) > deps.highWaterBytes &&
        Date.now() < deadline
      ) {
        await transportDrained(conn, 50);
      }
      if (!socket.connected || Date.now() >= deadline) break;
      socket.emit(m.event, JSON.parse(m.payloadJson) as unknown);
      written += 1;
    }
    return written;
  }

  return {
    async beforeRegisterAck(socket, userId) {
      try {
        const t = await deps.store.take(userId);
        if (t.expired > 0) metrics.offlineExpired.inc(t.expired);
        if (t.messages.length === 0) return 0;
        taken.set(socket, t);
        return t.messages.length;
      } catch (err) {
        // Registering matters more than the backlog: it stays stored for the next register.
        log.warn({ err }, "could not read stored messages; registering without replay");
        return 0;
      }
    },
    async afterRegister(socket) {
      const t = taken.get(socket);
      if (!t) return;
      taken.delete(socket);
      const written = await write(socket, t);
      if (written > 0) metrics.offlineReplayed.inc(written);
      if (written === t.messages.length) {
        await t.confirm().catch((err: unknown) => log.warn({ err }, "could not confirm a replay"));
        return;
      }
      log.info(
        { written, kept: t.messages.length - written },
        "socket left during a replay; the rest stays stored",
      );
      await t
        .restore(written)
        .catch((err: unknown) => log.error({ err }, "could not give messages back"));
    },
  };
}
