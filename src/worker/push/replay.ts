import type { Logger } from "pino";
import { metrics } from "../../shared/metrics.js";
import type { GatewayHooks, GatewaySocket } from "../gateway/gateway.js";
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
 * `replayed`. Taking is a lease, not a removal. After the ack: write them to
 * this socket, oldest first, confirming as they are written (a confirmed
 * message leaves the store). The writes are paced by the socket's output
 * buffer, so a long backlog of large payloads does not trip the
 * slow-consumer limit; if the socket goes away meanwhile, what was not
 * written goes back to the store, and if the worker dies, its lease does
 * (the primary frees it on exit; with Redis, the replacement worker does).
 * At least once: a message written but not yet confirmed comes again.
 */

const MAX_REPLAY_MS = 30_000;
/**
 * How long taken messages stay leased without a confirmation before any take
 * may have them again: longer than a replay may last. A worker that dies is
 * not waited for (its replacement frees its leases at start); this is for a
 * host that vanished whole.
 */
export const REPLAY_LEASE_MS = MAX_REPLAY_MS * 2;
/** Try to confirm written messages at least this often, so a crash repeats few of them. */
const CONFIRM_EVERY = 8;

export function createReplayHooks(deps: {
  store: DeliveryStore;
  log: Logger;
  /** Pause the replay while the socket holds more than this (half the slow-consumer limit). */
  highWaterBytes: number;
}): GatewayHooks {
  const log = deps.log.child({ module: "replay" });
  const taken = new WeakMap<GatewaySocket, TakenMessages>();

  /**
   * Writes the messages in order and confirms them as they reach the TCP
   * socket: whenever the socket's user-space output is empty, everything
   * emitted so far has been handed to the kernel, and that prefix is
   * confirmed (every few messages, and while waiting for the client to read).
   * A worker that dies mid-replay so leaves leased only what may still have
   * been in its own memory; that comes back on the next register. Returns
   * how many were confirmed.
   */
  async function write(socket: GatewaySocket, t: TakenMessages): Promise<number> {
    const deadline = Date.now() + MAX_REPLAY_MS;
    let written = 0;
    let confirmed = 0;
    // Paced by the socket's output: engine.io's queue plus ws' send buffer.
    const conn = connectionOf(socket);
    // A confirmation that fails (the store slow or away) does not stop the
    // replay: the messages go on being written, and the next try is the last
    // one, after the last message. What it cannot confirm stays leased and
    // comes again (at least once).
    let confirmFailed = false;
    const confirmFlushed = async (last = false) => {
      if (written <= confirmed || bufferedBytes(conn) > 0 || (confirmFailed && !last)) return;
      try {
        await t.confirm(written);
        confirmed = written;
      } catch (err) {
        if (last) throw err;
        confirmFailed = true;
        log.warn({ err }, "a replay's confirmation failed; writing on, confirming at the end");
      }
    };
    const drainThenConfirm = async () => {
      await transportDrained(conn, 50);
      await confirmFlushed();
    };
    const waitWhile = async (cond: () => boolean) => {
      while (socket.connected && cond() && Date.now() < deadline) await drainThenConfirm();
    };
    for (const m of t.messages) {
      await waitWhile(() => bufferedBytes(conn) > deps.highWaterBytes);
      if (!socket.connected || Date.now() >= deadline) break;
      socket.emit(m.event, JSON.parse(m.payloadJson) as unknown);
      written += 1;
      if (written - confirmed >= CONFIRM_EVERY) await drainThenConfirm();
    }
    await waitWhile(() => bufferedBytes(conn) > 0);
    await confirmFlushed(true);
    return confirmed;
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
      let written = 0; // confirmed: emitted and handed to the kernel
      try {
        written = await write(socket, t);
      } catch (err) {
        // A confirmation failed (store unreachable): the lease times out and they come again.
        log.warn({ err }, "could not confirm a replay");
        return;
      }
      if (written > 0) metrics.offlineReplayed.inc(written);
      // write() confirmed them as they went.
      if (written === t.messages.length) return;
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
