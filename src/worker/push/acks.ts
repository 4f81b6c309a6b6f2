import type { GatewayServer } from "../gateway/gateway.js";
import { ackIdCounter, pendingAcks } from "../sio-internals.js";

/**
 * Pushes that wait for client acks. Socket.IO's own
 * `io.to(room).timeout(ms).emit(ev, data, cb)` reports only the responses on
 * a timeout, not how many sockets were reached, so this talks to the adapter
 * the same way it does: `broadcastWithAck` makes every server of the cluster
 * (each worker, each host with Redis) write the packet to its sockets and
 * report how many it reached, then relays each client's ack. The answer is
 * ready once every server has reported and every reached socket has acked,
 * or when the timeout passes.
 */

export interface AckOutcome {
  /** Sockets the push was written to (servers that did not report in time count 0). */
  delivered: number;
  /** Sockets that acknowledged within the timeout. */
  acked: number;
}

export interface AckTarget {
  /** Empty means every socket (a broadcast). */
  rooms: readonly string[];
  except: readonly string[];
  volatile: boolean;
}

const EVENT_PACKET = 2; // socket.io-parser PacketType.EVENT

export function emitWithAcks(
  io: GatewayServer,
  target: AckTarget,
  event: string,
  payload: unknown,
  timeoutMs: number,
): Promise<AckOutcome> {
  const nsp = io.of("/");
  const adapter = nsp.adapter;
  const packet: { type: number; data: unknown[]; nsp: string; id?: number } = {
    type: EVENT_PACKET,
    data: [event, payload],
    nsp: nsp.name,
  };
  return new Promise((resolve) => {
    let delivered = 0;
    let acked = 0;
    let servers = 0;
    let expectedServers = -1;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // Our own sockets that never acked would keep the callback until they disconnect.
      if (acked < delivered && packet.id !== undefined) {
        for (const s of nsp.sockets.values()) pendingAcks(s).delete(packet.id);
      }
      resolve({ delivered, acked });
    };
    const check = () => {
      if (servers === expectedServers && acked >= delivered) finish();
    };
    const timer = setTimeout(finish, timeoutMs);
    adapter.broadcastWithAck(
      packet,
      {
        rooms: new Set(target.rooms),
        except: new Set(target.except),
        flags: { timeout: timeoutMs, ...(target.volatile ? { volatile: true } : {}) },
      },
      (clientCount) => {
        if (done) return;
        delivered += clientCount;
        servers += 1;
        check();
      },
      () => {
        if (done) return;
        acked += 1;
        check();
      },
    );
    adapter.serverCount().then(
      (n) => {
        expectedServers = n;
        check();
      },
      () => {}, // unknown server count: the timeout answers
    );
  });
}

/**
 * A worker that relays a push for another server keeps the ack callback of
 * each socket it wrote to until that client acks or disconnects; a client
 * that never acks would collect them for its whole life. Ack ids grow with
 * the namespace's packet counter, so every `intervalMs` the counter is
 * sampled, and callbacks older than `maxAgeMs` (past any ackTimeoutMs) are
 * dropped. Only pushes with ackTimeoutMs emit with acks in this server.
 */
export function sweepStaleAcks(io: GatewayServer, maxAgeMs: number, intervalMs = 10_000) {
  const nsp = io.of("/");
  const samples: { at: number; ids: number }[] = [];
  const timer = setInterval(() => {
    const now = Date.now();
    samples.push({ at: now, ids: ackIdCounter(nsp) });
    let watermark = -1;
    while (samples.length > 1 && samples[1]!.at <= now - maxAgeMs) samples.shift();
    if (samples[0]!.at <= now - maxAgeMs) watermark = samples[0]!.ids;
    if (watermark < 0) return;
    for (const s of nsp.sockets.values()) {
      const acks = pendingAcks(s);
      if (acks.size === 0) continue;
      // Insertion order is id order: stop at the first recent one.
      for (const id of acks.keys()) {
        if (id >= watermark) break;
        acks.delete(id);
      }
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
