import { randomBytes } from "node:crypto";
import type { HistoryPosition } from "../../shared/events.js";
import type { HistoryAppend, HistoryEntry, HistoryRead } from "../../shared/history.js";
import type { RedisTarget } from "../../shared/redis-target.js";
import { createStoreClient, type RedisClient } from "../redis/redis-clients.js";
import { waitForReady } from "../redis/wait-ready.js";
import type { HistoryStore } from "./history-store.js";

/**
 * History rooms in Redis, shared by every host: one ordered counter per room
 * for the whole system, and its last HISTORY_SIZE pushes.
 *
 * Keys per room, under one hash tag so that a room's script stays in one
 * slot on Redis Cluster (each room may live on another master):
 * - `<prefix>:history:{<room>}:meta` HASH `epoch`, `seq`, `replid`: the
 *   counter, the epoch it counts in, and the replication id of the Redis
 *   node the epoch was made on. Made anew (new random epoch, log cleared)
 *   whenever it is missing (a room's first push, after `counterKeepMs` of
 *   silence, a flush, a failover whose replica had not received it) or its
 *   `replid` is not the node's current one.
 * - `<prefix>:history:{<room>}:log` LIST of `<offset> <ms>\n<event>\n<payload JSON>`,
 *   trimmed to HISTORY_SIZE, expiring with the last push's TTL.
 *
 * Why the replication id: replication and `appendfsync everysec` are
 * asynchronous, so a promoted replica or a restarted server can hold a
 * room's key with its last increments lost; counting on from there would
 * give offsets twice in one epoch, and a recovery could answer
 * `recovered: true` past pushes that are gone. Redis gives a node a new
 * `master_replid` whenever its data may have diverged from the stream it
 * was part of (a restart, even a clean one; `REPLICAOF NO ONE`; a
 * failover), so each script reads it (`INFO replication`, a few µs of
 * Redis time) and starts a new epoch when it changed: clients refetch once
 * rather than skip silently. On Redis Cluster each node has its own id
 * (the script runs on the key's node); a room whose slot moved to another
 * node starts anew too. Where a managed Redis forbids INFO in scripts the
 * id reads as '' and only a missing key is caught.
 */

const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

// KEYS: meta, log. ARGV: candidate epoch, keepMs (meta), fresh ('1': start a new epoch).
const META = `local function replid()
  local info = redis.pcall('INFO', 'replication')
  if type(info) ~= 'string' then return '' end
  return string.match(info, 'master_replid:(%w+)') or ''
end
local function meta()
  local m = redis.call('HMGET', KEYS[1], 'epoch', 'replid')
  local epoch = m[1]
  local id = replid()
  if not epoch or m[2] ~= id or ARGV[3] == '1' then
    epoch = ARGV[1]
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0, 'replid', id)
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return epoch
end`;

// ARGV (after META's three): size, ttlMs, entry. Returns {epoch, offset}.
const APPEND = `${NOW}
${META}
local epoch = meta()
local offset = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('RPUSH', KEYS[2], offset .. ' ' .. now .. '\\n' .. ARGV[6])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {epoch, offset}`;

// ARGV (after META's three): since epoch ('' for none), since offset, ttlMs.
// Returns {epoch, seq, recovered (0/1), entries...}.
const READ = `${NOW}
${META}
local epoch = meta()
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local since = tonumber(ARGV[5])
if ARGV[4] ~= epoch or since > seq then return {epoch, seq, 0} end
local want = seq - since
if want == 0 then return {epoch, seq, 1} end
if redis.call('LLEN', KEYS[2]) < want then return {epoch, seq, 0} end
local items = redis.call('LRANGE', KEYS[2], -want, -1)
local at = tonumber(string.match(items[1], '^%d+ (%d+)'))
if at <= now - tonumber(ARGV[6]) then return {epoch, seq, 0} end
local out = {epoch, seq, 1}
for _, it in ipairs(items) do out[#out + 1] = it end
return out`;

type Script = (...args: (string | number)[]) => Promise<unknown>;

export interface RedisHistoryOptions {
  target: RedisTarget;
  prefix: string;
  size: number;
  ttlMs: number;
  /** How long a silent room keeps its counter and epoch. */
  keepMs: number;
  commandTimeoutMs: number;
}

export type RedisHistory = HistoryStore & {
  readonly redis: RedisClient;
  append(
    req: HistoryAppend,
    fresh?: boolean,
  ): Promise<{ positions: HistoryPosition[]; store: "redis" }>;
  ready(ms: number): Promise<boolean>;
};

export function parseHistoryEntry(item: string): HistoryEntry {
  const nl1 = item.indexOf("\n");
  const nl2 = item.indexOf("\n", nl1 + 1);
  return {
    offset: Number(item.slice(0, item.indexOf(" "))),
    event: item.slice(nl1 + 1, nl2),
    payloadJson: item.slice(nl2 + 1),
  };
}

export function createRedisHistory(opts: RedisHistoryOptions): RedisHistory {
  // Fails at once while disconnected: the host's sequencer takes over.
  const redis = createStoreClient(opts.target, {
    connectionName: "socket-server:history",
    commandTimeoutMs: opts.commandTimeoutMs,
  });
  redis.defineCommand("ssHistoryAppend", { lua: APPEND, numberOfKeys: 2 });
  redis.defineCommand("ssHistoryRead", { lua: READ, numberOfKeys: 2 });
  const s = redis as unknown as { ssHistoryAppend: Script; ssHistoryRead: Script };
  const keys = (room: string) => {
    const base = `${opts.prefix}:history:{${room}}`;
    return [`${base}:meta`, `${base}:log`];
  };
  const epoch = () => randomBytes(6).toString("base64url");

  return {
    kind: "redis",
    redis,
    ready: (ms) => waitForReady(redis, ms),
    async append(req, fresh = false) {
      const entry = `${req.event}\n${req.payloadJson}`;
      // One script per room: each room may live on its own cluster slot.
      const positions = await Promise.all(
        req.rooms.map(async (room) => {
          const [e, offset] = (await s.ssHistoryAppend(
            ...keys(room),
            epoch(),
            opts.keepMs,
            fresh ? "1" : "0",
            opts.size,
            opts.ttlMs,
            entry,
          )) as [string, number];
          return { epoch: e, offset };
        }),
      );
      return { positions, store: "redis" };
    },
    async read(room, since) {
      const [e, seq, recovered, ...items] = (await s.ssHistoryRead(
        ...keys(room),
        epoch(),
        opts.keepMs,
        "0",
        since?.epoch ?? "",
        since?.offset ?? 0,
        opts.ttlMs,
      )) as [string, number, number, ...string[]];
      const position = { epoch: e, offset: seq };
      if (recovered !== 1) return { recovered: false, position } satisfies HistoryRead;
      return { recovered: true, position, entries: items.map(parseHistoryEntry) };
    },
    async close() {
      redis.disconnect();
    },
  };
}
