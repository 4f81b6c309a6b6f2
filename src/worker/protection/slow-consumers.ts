import type { Logger } from "pino";
import { metrics } from "../../shared/metrics.js";
import type { GatewayServer } from "../gateway.js";

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

interface PacketLike {
  data?: unknown;
}
interface EngineSocketLike {
  writeBuffer: PacketLike[];
  transport: {
    name: string;
    writable: boolean;
    socket?: { bufferedAmount?: number; terminate?: () => void };
  };
  close(discard?: boolean): void;
}

function packetBytes(p: PacketLike): number {
  const d = p.data;
  if (typeof d === "string") return d.length;
  if (d instanceof ArrayBuffer) return d.byteLength;
  if (ArrayBuffer.isView(d)) return d.byteLength;
  return 8;
}

export function bufferedBytes(conn: EngineSocketLike): number {
  let n = 0;
  for (const p of conn.writeBuffer) n += packetBytes(p);
  if (conn.transport.name === "websocket") n += conn.transport.socket?.bufferedAmount ?? 0;
  return n;
}

export function watchSlowConsumers(deps: {
  io: GatewayServer;
  log: Logger;
  maxBufferedBytes: number;
}): { close(): void } {
  const log = deps.log.child({ module: "slow-consumers" });
  // Engine.IO keeps its sockets in a plain object keyed by id.
  const engine = deps.io.engine as unknown as { clients: Record<string, EngineSocketLike> };
  const timer = setInterval(() => {
    for (const id in engine.clients) {
      const conn = engine.clients[id]!;
      if (conn.transport.writable && conn.writeBuffer.length === 0) continue;
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
