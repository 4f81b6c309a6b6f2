import { NodeClusterAdapter } from "@socket.io/cluster-adapter";
import { decode, encode } from "notepack.io";
import type { Logger } from "pino";
import type { Adapter, ClusterMessage, ClusterResponse } from "socket.io-adapter";
import type { MessageHandler, RedisLink } from "./redis-link.js";

/**
 * The Socket.IO adapter with REDIS_URL: the cluster adapter inside a host,
 * Redis between hosts.
 *
 * Every message a worker publishes (broadcasts, acks, heartbeats, ...) goes
 * to the other workers of its host over IPC, exactly as without Redis, and
 * to Redis tagged with the host id; workers drop Redis messages of their own
 * host (they had them over IPC). So a Redis outage costs cross-host delivery
 * only: each host keeps delivering to all of its own workers. With
 * @socket.io/redis-adapter alone (every worker a Redis node) a push taken by
 * worker 1 would reach only worker 1's sockets while Redis is down.
 *
 * Channels (the socket.io-adapter ClusterMessage protocol, as
 * @socket.io/redis-adapter's sharded adapter uses it):
 * - classic: every message on `<prefix>#/#` (PUBLISH/SUBSCRIBE, any Redis);
 *   a broadcast to one room carries the room in its header, and a worker
 *   that does not hold the room skips it without decoding the body;
 * - sharded (Redis 7, like `createShardedAdapter` with subscriptionMode
 *   "dynamic"): a broadcast to one public room goes to `<prefix>#/#<room>#`
 *   (SPUBLISH), which only workers holding that room subscribe to, so a user
 *   push reaches only the host(s) of that user; the rest to `<prefix>#/#`.
 * Responses (ack counts, fetchSockets, serverSideEmit) to a node on another
 * host go to `<prefix>-response#/#<uid>#`. No pattern subscription: a Redis
 * ACL `&<prefix>:*` covers every channel.
 *
 * Frame: a JSON header line `["<host>","<room or empty>"]\n`, then the
 * message as JSON, or msgpack when it carries binary.
 */

export interface HostsAdapterDeps {
  link: RedisLink;
  hostId: string;
  /** Channel prefix, e.g. "socket-server:sio". */
  prefix: string;
  mode: "classic" | "sharded";
  /**
   * Publish in order per channel (orderedPublisher): needed where the
   * client retries commands on its own, a Redis Cluster. Elsewhere one
   * connection's pipeline keeps the order, and a failed command is dropped.
   */
  ordered?: boolean;
  log: Logger;
  heartbeatIntervalMs?: number;
  /** Called for each message to other hosts that could not be published. */
  onPublishFailure?: () => void;
}

// socket.io-adapter's MessageType values (a protocol constant; the enum is
// not a runtime dependency of ours).
const INITIAL_HEARTBEAT = 1;
const HEARTBEAT = 2;
const BROADCAST = 3;
const ADAPTER_CLOSE = 13;

/** Socket.IO socket ids are 20 characters: such a room is a socket's own room. */
const looksLikeSocketId = (room: string) => room.length === 20;
/** Messages a channel holds while its batch in flight waits out a failover. */
const MAX_WAITING_PER_CHANNEL = 10_000;
const NEWLINE = 10;

export function hasBinary(value: unknown, depth = 0): boolean {
  if (!value || typeof value !== "object" || depth > 32) return false;
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return true;
  if (Array.isArray(value)) return value.some((v) => hasBinary(v, depth + 1));
  for (const v of Object.values(value)) if (hasBinary(v, depth + 1)) return true;
  return false;
}

type Wire = { type: number; [k: string]: unknown };

export function frame(hostId: string, room: string, message: Wire): string | Buffer {
  const header = `${JSON.stringify([hostId, room])}\n`;
  if (!hasBinary(message)) return header + JSON.stringify(message);
  return Buffer.concat([Buffer.from(header), Buffer.from(encode(message))]);
}

export function unframe(
  raw: Buffer,
): { host: string; room: string; body: () => Record<string, unknown> | undefined } | undefined {
  const nl = raw.indexOf(NEWLINE);
  if (nl < 0) return undefined;
  let header: unknown;
  try {
    header = JSON.parse(raw.toString("utf8", 0, nl));
  } catch {
    return undefined;
  }
  if (!Array.isArray(header) || typeof header[0] !== "string" || typeof header[1] !== "string") {
    return undefined;
  }
  const body = () => {
    const b = raw.subarray(nl + 1);
    try {
      const m = b[0] === 0x7b ? JSON.parse(b.toString()) : decode(b);
      return m && typeof m === "object" ? (m as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  };
  return { host: header[0], room: header[1], body };
}

/**
 * Publishes in order, per channel. ioredis retries each command on its own
 * (in a Redis Cluster failover every command to the dead master waits
 * `retryDelayOnFailover` and tries again), so a push sent while the one
 * before it waits out a retry could reach the other hosts first. Here a
 * channel's messages go out in batches: what arrives while a batch is in
 * flight waits for it to settle (published or given up), then goes out as
 * the next batch, pipelined. In the steady state that costs at most one
 * round trip of latency and no throughput. Used on a Redis Cluster only.
 */
export function orderedPublisher(o: {
  up: () => boolean;
  send: (channel: string, payload: string | Buffer) => Promise<unknown>;
  /** Called once for each message that was not published. */
  dropped: () => void;
}): (channel: string, payload: string | Buffer) => void {
  const waiting = new Map<string, (string | Buffer)[]>();
  const next = (channel: string) => {
    const batch = waiting.get(channel);
    if (batch?.length) send(channel, batch);
    else waiting.delete(channel);
  };
  const send = (channel: string, batch: (string | Buffer)[]) => {
    waiting.set(channel, []);
    if (o.up()) {
      const sent = batch.map((payload) => o.send(channel, payload).catch(o.dropped));
      void Promise.all(sent).then(() => next(channel));
      return;
    }
    for (let i = 0; i < batch.length; i++) o.dropped();
    next(channel);
  };
  return (channel, payload) => {
    if (!o.up()) return o.dropped();
    const queue = waiting.get(channel);
    if (!queue) return send(channel, [payload]);
    // A channel held up this long (a failover that does not end) drops
    // rather than piling up.
    if (queue.length >= MAX_WAITING_PER_CHANNEL) return o.dropped();
    queue.push(payload);
  };
}

// biome-ignore lint/suspicious/noExplicitAny: socket.io's Namespace type is `any` in the adapter API
export function createHostsAdapter(deps: HostsAdapterDeps): (nsp: any) => Adapter {
  const { link, hostId } = deps;
  const log = deps.log.child({ module: "hosts-adapter" });
  const heartbeatIntervalMs = deps.heartbeatIntervalMs ?? 5_000;
  const sharded = deps.mode === "sharded";
  const kind = sharded ? "shard" : "channel";

  const dropped = deps.onPublishFailure ?? (() => {});
  const send = (channel: string, payload: string | Buffer) =>
    sharded ? link.pub.spublish(channel, payload) : link.pub.publish(channel, payload);
  const publish = deps.ordered
    ? orderedPublisher({ up: () => link.up(), send, dropped })
    : (channel: string, payload: string | Buffer) => {
        if (!link.up()) return dropped();
        send(channel, payload).catch(dropped);
      };

  class HostsAdapter extends NodeClusterAdapter {
    /** Nodes heard over Redis (other hosts) -> last seen; responses to them go over Redis. */
    private readonly remoteUids = new Map<string, number>();
    private readonly base: string;
    private readonly responseChannel: string;
    private readonly timer: NodeJS.Timeout;
    /** Sharded: rooms whose channel's SSUBSCRIBE Redis has not confirmed yet. */
    private readonly subscribing = new Map<string, Promise<void>>();
    private readonly onRoomCreated = (room: string) => {
      if (this.sids.has(room)) return;
      const done: Promise<void> = link
        .subscribe("shard", this.roomChannel(room), this.onRaw)
        .finally(() => {
          if (this.subscribing.get(room) === done) this.subscribing.delete(room);
        });
      this.subscribing.set(room, done);
    };
    private readonly onRoomDeleted = (room: string) => {
      if (!this.sids.has(room)) link.unsubscribe("shard", this.roomChannel(room));
    };

    /**
     * Resolves once what other hosts send to `room` reaches this worker: in
     * sharded mode, once Redis has confirmed the room channel's SSUBSCRIBE
     * (on a Redis Cluster the first one to a master also opens ioredis'
     * subscriber connection to it). A push from another host right after a
     * join would otherwise be published before the subscription exists.
     * Undefined when there is nothing to wait for.
     */
    roomSubscribed(room: string): Promise<void> | undefined {
      return this.subscribing.get(room);
    }

    // biome-ignore lint/suspicious/noExplicitAny: socket.io's Namespace type is `any` in the adapter API
    constructor(nsp: any) {
      super(nsp, {
        heartbeatInterval: heartbeatIntervalMs,
        heartbeatTimeout: heartbeatIntervalMs * 2,
      });
      this.base = `${deps.prefix}#${this.nsp.name}#`;
      this.responseChannel = `${deps.prefix}-response#${this.nsp.name}#${this.uid}#`;
      link.subscribe(kind, this.base, this.onRaw);
      link.subscribe(kind, this.responseChannel, this.onRawResponse);
      if (sharded) {
        this.on("create-room", this.onRoomCreated);
        this.on("delete-room", this.onRoomDeleted);
      }
      // Other hosts learn of this node (and it of them) over Redis. The base
      // class's heartbeat only fires when a node has been silent, and in
      // sharded mode most messages never reach most hosts, hence our own.
      this.timer = setInterval(() => {
        this.publishToHosts({ type: HEARTBEAT });
        const stale = Date.now() - 3 * heartbeatIntervalMs;
        for (const [uid, seen] of this.remoteUids) if (seen < stale) this.remoteUids.delete(uid);
      }, heartbeatIntervalMs);
      this.timer.unref();
      this.publishToHosts({ type: INITIAL_HEARTBEAT });
      link.onChange((up) => {
        if (up) {
          this.publishToHosts({ type: INITIAL_HEARTBEAT });
          return;
        }
        // Other hosts are out of reach: forget their nodes now (as if they
        // had closed) rather than after the heartbeat timeout, so that acks
        // and fetches stop waiting for them. They come back with their
        // next heartbeat once Redis is up.
        for (const uid of this.remoteUids.keys()) {
          this.onMessage({ type: ADAPTER_CLOSE, uid, nsp: this.nsp.name } as ClusterMessage);
        }
        this.remoteUids.clear();
      });
    }

    private roomChannel(room: string): string {
      return `${this.base}${room}#`;
    }

    private publishToHosts(message: Wire): void {
      publish(this.base, frame(hostId, "", { ...message, uid: this.uid, nsp: this.nsp.name }));
    }

    private readonly onRaw: MessageHandler = (_channel, raw) => {
      const f = unframe(raw);
      if (!f || f.host === hostId) return; // own host: delivered over IPC
      // Classic mode: every worker hears every message; skip a room it does not hold.
      if (f.room !== "" && !this.rooms.has(f.room)) return;
      const message = f.body();
      if (!message || typeof message.uid !== "string") return;
      this.remoteUids.set(message.uid, Date.now());
      this.onMessage(message as unknown as ClusterMessage);
    };

    private readonly onRawResponse: MessageHandler = (_channel, raw) => {
      const response = unframe(raw)?.body();
      if (!response || typeof response.type !== "number") return;
      this.onResponse(response as unknown as ClusterResponse);
    };

    protected override async doPublish(
      message: ClusterMessage & { source: string },
    ): Promise<string> {
      const offset = await super.doPublish(message);
      // NodeClusterAdapter's constructor publishes before ours has run.
      if (this.base === undefined) return offset;
      const { source: _ipcOnly, ...rest } = message;
      let room = "";
      const data = (message as { data?: { requestId?: string; opts?: { rooms: string[] } } }).data;
      // A broadcast with an ack stays unrouted: every node reports its
      // client count, as the ack bookkeeping expects.
      if (message.type === BROADCAST && data?.requestId === undefined && data?.opts) {
        const rooms = data.opts.rooms;
        if (rooms.length === 1) room = rooms[0]!;
      }
      const channel =
        sharded && room !== "" && !looksLikeSocketId(room) ? this.roomChannel(room) : this.base;
      publish(channel, frame(hostId, room, rest));
      return offset;
    }

    protected override doPublishResponse(
      requesterUid: string,
      response: ClusterResponse & { source: string; requesterUid: string },
    ): Promise<void> {
      if (!this.remoteUids.has(requesterUid))
        return super.doPublishResponse(requesterUid, response);
      const { source: _s, requesterUid: _r, ...rest } = response;
      publish(`${deps.prefix}-response#${this.nsp.name}#${requesterUid}#`, frame(hostId, "", rest));
      return Promise.resolve();
    }

    override close(): void {
      clearInterval(this.timer);
      link.unsubscribe(kind, this.base);
      link.unsubscribe(kind, this.responseChannel);
      if (sharded) {
        for (const room of this.rooms.keys()) {
          if (!this.sids.has(room)) link.unsubscribe("shard", this.roomChannel(room));
        }
      }
      super.close();
    }
  }

  log.debug({ mode: deps.mode }, "hosts adapter ready");
  // Socket.IO calls the factory with `new`, so it cannot be an arrow function.
  // biome-ignore lint/suspicious/noExplicitAny: see the constructor
  return function hostsAdapter(nsp: any) {
    return new HostsAdapter(nsp);
  };
}
