import type { Logger } from "pino";
import { metrics } from "../../shared/metrics.js";
import type { GatewayServer } from "../gateway/gateway.js";
import { bufferedBytes, engineConnections, outputIdle } from "../sio-internals.js";

/**
 * Disconnects clients that do not read their socket before their pending
 * output grows without bound. What a socket holds for its client:
 *
 * - Engine.IO's `writeBuffer`: packets waiting while the transport is busy
 *   (a websocket send not yet written out, or a polling client not polling);
 * - on websocket, `ws`'s `bufferedAmount`: bytes in the sender queue and in
 *   the net.Socket, not yet accepted by the kernel.
 *
 * A sweep every CHECK_MS looks only at sockets whose transport is busy or
 * whose buffer is not empty, so its cost stays near zero when clients read.
 * Over MAX_BUFFERED_BYTES_PER_SOCKET the connection is dropped at once (the
 * buffered output is discarded, the websocket terminated, not closed
 * politely: a close frame would queue behind the data the client is not
 * reading).
 */

const CHECK_MS = 250;

export function watchSlowConsumers(deps: {
  io: GatewayServer;
  log: Logger;
  maxBufferedBytes: number;
}): { close(): void } {
  const log = deps.log.child({ module: "slow-consumers" });
  const timer = setInterval(() => {
    const clients = engineConnections(deps.io);
    for (const id in clients) {
      const conn = clients[id]!;
      if (outputIdle(conn)) continue;
      const bytes = bufferedBytes(conn);
      if (bytes <= deps.maxBufferedBytes) continue;
      metrics.shed.inc({ reason: "slow_consumer" });
      metrics.serverDisconnects.inc({ code: "SLOW_CONSUMER" });
      log.warn({ engineId: id, bufferedBytes: bytes }, "slow consumer: disconnecting");
      const ws = conn.transport.name === "websocket" ? conn.transport.socket : undefined;
      conn.close(true);
      ws?.terminate?.();
    }
  }, CHECK_MS);
  timer.unref();
  return { close: () => clearInterval(timer) };
}
