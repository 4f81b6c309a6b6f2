import { DISCONNECT_REASONS, SERVER_DISCONNECT_EVENT } from "../../shared/events.js";
import { metrics } from "../../shared/metrics.js";
import type { GatewayServer } from "../gateway/gateway.js";

/**
 * Tells every client of this worker to reconnect, and waits until their
 * connections are closed (or `timeoutMs`). Each socket gets the
 * `server:disconnect` notice with SHUTTING_DOWN, then its Engine.IO
 * connection is closed after the buffered output is flushed. Closing the
 * transport rather than sending a Socket.IO DISCONNECT matters: a client
 * sees "transport close" and its built-in reconnection takes it to another
 * worker or host, where "io server disconnect" would leave it offline.
 */
export async function reconnectClients(io: GatewayServer, timeoutMs: number): Promise<number> {
  const sockets = [...io.of("/").sockets.values()];
  if (sockets.length === 0) return 0;
  const closed = sockets.map(
    (s) =>
      new Promise<void>((resolve) => {
        if (s.disconnected) return resolve();
        s.once("disconnect", () => resolve());
      }),
  );
  for (const s of sockets) {
    s.emit(SERVER_DISCONNECT_EVENT, {
      code: "SHUTTING_DOWN",
      message: DISCONNECT_REASONS.SHUTTING_DOWN,
    });
    s.conn.close();
  }
  metrics.serverDisconnects.inc({ code: "SHUTTING_DOWN" }, sockets.length);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(closed),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  return sockets.length;
}
