import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { CLUSTER_QUERY_KINDS, type Query, type QueryReply } from "../../shared/ipc.js";
import type { ClusterClient, ClusterResult } from "../cluster-client.js";
import type { RedisLink } from "./redis-link.js";

/**
 * Cluster queries (`/api/users/:id`, `/api/rooms`, membership changes, user
 * disconnects, status, revocations...) across every host, in bounded time.
 *
 * The worker that takes the request asks its own primary (as on one host)
 * and, at the same time, publishes the query on `<prefix>:q`. On every other
 * host exactly one worker takes it — the first to `SET <prefix>:qc:<id>:<host>
 * NX` — asks its primary, which fans it out to that host's workers, and
 * publishes the host's merged answer to the asking worker's reply channel.
 * So a mutating query (join, leave, disconnect) runs once per host.
 *
 * Which hosts exist comes from a registry (`<prefix>:hosts`, a sorted set
 * scored by Redis' clock) that every worker refreshes every 2 s; a host
 * silent for HOST_TTL_MS drops out of it. The answer waits for the known
 * hosts, never longer than the timeout, and names in `missingHosts` each
 * host that did not answer in time or answered without all of its workers.
 * While Redis is down the other hosts are unreachable: the local answer
 * comes back at once with every last-known other host in `missingHosts`.
 */

export interface HostsClusterDeps {
  link: RedisLink;
  /** This host's own cluster client (the primary's QueryHub over IPC). */
  local: ClusterClient;
  hostId: string;
  /** Key and channel prefix, e.g. "socket-server". */
  prefix: string;
  log: Logger;
  registryIntervalMs?: number;
}

export interface HostsCluster extends ClusterClient {
  /** Registers this host and reads the registry now (also every registryIntervalMs). */
  refresh(): Promise<void>;
  /** Tells the other hosts' workers this host is here (they add it at once). */
  announce(): void;
  /** The host is shutting down: out of the registry, and the others forget it at once. */
  leave(): Promise<void>;
  close(): void;
}

const HOST_TTL_MS = 7_000;
const REGISTRY_KEEP_MS = 60_000;

/** Adds this host with Redis' clock, prunes long-gone hosts, lists live ones. */
const BEAT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[2]), '+inf')
`;

interface RemoteRequest {
  id: string;
  host: string;
  reply: string;
  q: Query;
  budgetMs: number;
}
interface RemoteReply {
  id: string;
  host: string;
  replies: QueryReply[];
  missing: number[];
}

function isRequest(v: unknown): v is RemoteRequest {
  const r = v as RemoteRequest;
  return (
    typeof r === "object" &&
    r !== null &&
    typeof r.id === "string" &&
    typeof r.host === "string" &&
    typeof r.reply === "string" &&
    typeof r.budgetMs === "number" &&
    typeof r.q === "object" &&
    r.q !== null &&
    CLUSTER_QUERY_KINDS.has(r.q.kind)
  );
}

function isReply(v: unknown): v is RemoteReply {
  const r = v as RemoteReply;
  return (
    typeof r === "object" &&
    r !== null &&
    typeof r.id === "string" &&
    typeof r.host === "string" &&
    Array.isArray(r.replies) &&
    Array.isArray(r.missing)
  );
}

interface Pending {
  expected: Set<string>;
  answers: RemoteReply[];
  done: () => void;
}

export function createHostsCluster(deps: HostsClusterDeps): HostsCluster {
  const { link, local, hostId, prefix } = deps;
  const log = deps.log.child({ module: "hosts-cluster" });
  const uid = randomBytes(8).toString("hex");
  const requestChannel = `${prefix}:q`;
  const replyChannel = `${prefix}:qr:${uid}`;
  const registryKey = `${prefix}:hosts`;
  const announceChannel = `${prefix}:hosts`;
  let nextId = 1;
  let others: string[] = [];
  let left = false;
  const pending = new Map<string, Pending>();

  link.pub.defineCommand("ssHostBeat", { numberOfKeys: 1, lua: BEAT_LUA });
  const beat = link.pub as unknown as {
    ssHostBeat(key: string, host: string, ttlMs: number, keepMs: number): Promise<string[]>;
  };

  async function refresh(): Promise<void> {
    if (!link.up() || left) return;
    try {
      const hosts = await beat.ssHostBeat(registryKey, hostId, HOST_TTL_MS, REGISTRY_KEEP_MS);
      others = hosts.filter((h) => h !== hostId).sort();
    } catch {
      // Redis went away mid-call: keep the last view; the link logs the outage.
    }
  }
  const timer = setInterval(() => void refresh(), deps.registryIntervalMs ?? 2_000);
  timer.unref();
  const announce = (gone = false) => {
    if (!link.up()) return;
    link.pub.publish(announceChannel, JSON.stringify({ host: hostId, gone })).catch(() => {});
  };
  link.onChange((up) => {
    if (up && !left) void refresh().then(() => announce());
  });
  // A host that starts (or comes back) says so, so that the others do not
  // miss it for a registry period; one that shuts down says so too, so that
  // queries do not wait for it until it drops out of the registry.
  link.subscribe("channel", announceChannel, (_channel, raw) => {
    let msg: { host?: unknown; gone?: unknown };
    try {
      msg = JSON.parse(raw.toString());
    } catch {
      return;
    }
    const host = msg.host;
    if (typeof host !== "string" || host === hostId || host.length > 256) return;
    if (msg.gone === true) others = others.filter((h) => h !== host);
    else if (!others.includes(host)) others = [...others, host].sort();
  });

  link.subscribe("channel", requestChannel, (_channel, raw) => {
    let msg: unknown;
    try {
      msg = JSON.parse(raw.toString());
    } catch {
      return;
    }
    if (!isRequest(msg) || msg.host === hostId) return;
    void answerForThisHost(msg);
  });

  link.subscribe("channel", replyChannel, (_channel, raw) => {
    let msg: unknown;
    try {
      msg = JSON.parse(raw.toString());
    } catch {
      return;
    }
    if (!isReply(msg)) return;
    const p = pending.get(msg.id);
    if (!p || p.answers.some((a) => a.host === (msg as RemoteReply).host)) return;
    p.answers.push(msg);
    p.expected.delete(msg.host);
    if (p.expected.size === 0) p.done();
  });

  async function answerForThisHost(req: RemoteRequest): Promise<void> {
    try {
      const claimTtl = Math.max(1_000, req.budgetMs * 2);
      const claimed = await link.pub.set(
        `${prefix}:qc:${req.id}:${hostId}`,
        "1",
        "PX",
        claimTtl,
        "NX",
      );
      if (claimed !== "OK") return; // another worker of this host answers
      const r = await local.query(req.q, Math.max(1, req.budgetMs));
      const reply: RemoteReply = {
        id: req.id,
        host: hostId,
        replies: r.replies,
        missing: r.missing,
      };
      await link.pub.publish(req.reply, JSON.stringify(reply));
    } catch (err) {
      log.debug({ err, kind: req.q.kind }, "could not answer a query from another host");
    }
  }

  async function askOtherHosts(
    q: Query,
    timeoutMs: number,
  ): Promise<{ answers: RemoteReply[]; unanswered: string[] }> {
    const expected = new Set(others);
    if (!link.up()) return { answers: [], unanswered: [...expected] };
    if (expected.size === 0) return { answers: [], unanswered: [] };
    const id = `${uid}:${nextId++}`;
    const p: Pending = { expected, answers: [], done: () => {} };
    const finished = new Promise<void>((resolve) => {
      p.done = resolve;
    });
    pending.set(id, p);
    // The other hosts get most of the budget for their own fan-out; the rest
    // covers the trips through Redis.
    const request: RemoteRequest = {
      id,
      host: hostId,
      reply: replyChannel,
      q,
      budgetMs: Math.max(1, Math.floor(timeoutMs * 0.75)),
    };
    const timer = setTimeout(p.done, timeoutMs);
    link.pub.publish(requestChannel, JSON.stringify(request)).catch(p.done);
    await finished;
    clearTimeout(timer);
    pending.delete(id);
    return { answers: p.answers, unanswered: [...p.expected] };
  }

  return {
    refresh,
    announce: () => announce(),
    async leave() {
      left = true;
      clearInterval(timer);
      if (!link.up()) return;
      await link.pub.zrem(registryKey, hostId).catch(() => {});
      announce(true);
    },
    close() {
      clearInterval(timer);
      link.unsubscribe("channel", requestChannel);
      link.unsubscribe("channel", replyChannel);
      link.unsubscribe("channel", announceChannel);
      for (const p of pending.values()) p.done();
    },
    async query(q, timeoutMs): Promise<ClusterResult> {
      const [mine, remote] = await Promise.all([
        local.query(q, timeoutMs),
        askOtherHosts(q, timeoutMs),
      ]);
      // Status rows say which host they come from; other answers merge as they are.
      const label = (host: string) => (r: QueryReply) =>
        q.kind === "status" && r.result && typeof r.result === "object"
          ? { ...r, result: { host, ...(r.result as object) } }
          : r;
      const replies = mine.replies.map(label(hostId));
      const missingHosts = new Set(remote.unanswered);
      for (const a of remote.answers) {
        replies.push(...a.replies.map(label(a.host)));
        if (a.missing.length > 0) missingHosts.add(a.host);
      }
      return { replies, missing: mine.missing, missingHosts: [...missingHosts].sort() };
    },
  };
}
