import { createHash, randomBytes } from "node:crypto";
import type { IdemClaimResult, OfflinePutResult, StoredMessage } from "../../shared/ipc.js";
import type { RedisTarget } from "../../shared/redis-target.js";
import { createStoreClient, loadIoredis, type RedisClient } from "../redis/redis-clients.js";
import { waitForReady } from "../redis/wait-ready.js";
import {
  type DeliveryStore,
  nothingTaken,
  PartialPutError,
  type TakenMessages,
} from "./delivery-store.js";

/**
 * The delivery store in Redis (REDIS_URL), shared by every host: a user may
 * come back on another host and still get what was stored for them.
 *
 * Layout under `<REDIS_KEY_PREFIX>:delivery:`
 * - `q:<userId>`  LIST, the user's messages in push order; each entry is
 *   `<id> <bytes> <expiresAt ms> <storedAt ms>\n<event>\n<payload JSON>`
 *   (a header Lua can read without decoding the payload). The key expires
 *   with its longest-lived message.
 * - `index`       ZSET `<userId> <id>` → expiresAt: every live message, for
 *   the total bounds and the expiry sweep.
 * - `sizes`       HASH `<userId> <id>` → payload bytes; `bytes` the sum.
 * - `leased:<userId>` HASH message id → `<lease token> <until ms>`: a take
 *   leases messages instead of removing them; they leave `q:` only once
 *   confirmed as written to a socket. A lease past its time, or one whose
 *   worker was replaced (tokens start with the owner `<host id>:<slot>`),
 *   is free for the next take: a worker that dies mid-replay loses nothing.
 * - `owned:<owner>` SET of the users whose messages that worker leased.
 * - `idem:<key>`  `<id> <request fingerprint>` of the push that claimed the
 *   key (SET NX PX).
 *
 * Every operation is one Lua script, so each is atomic across hosts: two
 * tabs registering at once on two hosts never both get a message. Times are
 * Redis's own clock (TIME), so hosts with skewed clocks agree on expiry.
 *
 * On Redis Cluster a script's keys must share a slot. There the store is
 * split in CLUSTER_BUCKETS buckets, each with its own hash tag
 * `{<REDIS_KEY_PREFIX>:delivery:<bucket>}` and its own totals; a user's
 * keys live in the bucket their id hashes to (`deliveryBucket`). So every
 * script stays in one slot, the buckets spread over the masters, and the
 * global bounds (OFFLINE_MAX_TOTAL, OFFLINE_MAX_TOTAL_BYTES) hold per bucket
 * as 1/CLUSTER_BUCKETS of them each. A push to several users is stored with
 * one script per bucket. Outside a cluster there is one bucket, with the
 * untagged names above. The idempotency keys (one key per operation) keep
 * their untagged names and spread over every master.
 */

const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

const FORGET = `local function forget(members)
  local freed = 0
  local sizes = redis.call('HMGET', KEYS[2], unpack(members))
  for i = 1, #sizes do if sizes[i] then freed = freed + tonumber(sizes[i]) end end
  redis.call('ZREM', KEYS[1], unpack(members))
  redis.call('HDEL', KEYS[2], unpack(members))
  if freed > 0 then redis.call('DECRBY', KEYS[3], freed) end
end
local function sweep()
  local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
  if #old > 0 then forget(old) end
  return #old
end`;

// KEYS: index, sizes, bytes, queue per user. ARGV: maxPerUser, maxTotal,
// maxBytes, id, size, ttlMs, body, then the userIds (aligned with the queues).
const PUT = `${NOW}
${FORGET}
local maxPerUser, maxTotal, maxBytes = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local id, size, ttl = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local exp = now + ttl
local entry = id .. ' ' .. size .. ' ' .. exp .. ' ' .. now .. '\\n' .. ARGV[7]
local expired = sweep()
local count = redis.call('ZCARD', KEYS[1])
local bytes = tonumber(redis.call('GET', KEYS[3]) or '0')
local stored, dropped, refused = 0, 0, 0
for i = 4, #KEYS do
  local q, userId = KEYS[i], ARGV[4 + i]
  local victim, vsize = nil, 0
  if redis.call('LLEN', q) >= maxPerUser then
    local vid, vs = string.match(redis.call('LINDEX', q, 0), '^(%S+) (%d+) ')
    victim = userId .. ' ' .. vid
    -- an entry no longer in the index has expired and holds nothing in the totals
    if redis.call('ZSCORE', KEYS[1], victim) then vsize = tonumber(vs) else vsize = -1 end
  end
  local freeCount, freeBytes = 0, 0
  if victim and vsize >= 0 then freeCount, freeBytes = 1, vsize end
  if count - freeCount + 1 > maxTotal or bytes - freeBytes + size > maxBytes then
    refused = refused + 1
  else
    if victim then
      redis.call('LPOP', q)
      if vsize >= 0 then
        forget({victim})
        count, bytes, dropped = count - 1, bytes - vsize, dropped + 1
      end
    end
    local member = userId .. ' ' .. id
    redis.call('RPUSH', q, entry)
    redis.call('ZADD', KEYS[1], exp, member)
    redis.call('HSET', KEYS[2], member, size)
    redis.call('INCRBY', KEYS[3], size)
    count, bytes, stored = count + 1, bytes + size, stored + 1
    if redis.call('PTTL', q) < ttl then redis.call('PEXPIRE', q, ttl) end
  end
end
return {stored, dropped, refused, expired}`;

// KEYS: queue, index, sizes, bytes, leased, owned. ARGV: userId, token,
// leaseMs. Leases the user's unexpired messages that no live lease holds and
// returns {expired, entries...}; expired ones leave the queue.
const TAKE = `${NOW}
local items = redis.call('LRANGE', KEYS[1], 0, -1)
if #items == 0 then return {0} end
local leaseMs = tonumber(ARGV[3])
local out, expired, freed = {0}, 0, 0
for _, it in ipairs(items) do
  local id, size, exp = string.match(it, '^(%S+) (%d+) (%d+) ')
  if tonumber(exp) <= now then
    local member = ARGV[1] .. ' ' .. id
    if redis.call('ZSCORE', KEYS[2], member) then
      redis.call('ZREM', KEYS[2], member)
      redis.call('HDEL', KEYS[3], member)
      freed = freed + tonumber(size)
      expired = expired + 1
    end
    redis.call('LREM', KEYS[1], 1, it)
    redis.call('HDEL', KEYS[5], id)
  else
    local held = redis.call('HGET', KEYS[5], id)
    local until_ = held and tonumber(string.match(held, ' (%d+)$'))
    if not until_ or until_ <= now then
      redis.call('HSET', KEYS[5], id, ARGV[2] .. ' ' .. (now + leaseMs))
      out[#out + 1] = it
    end
  end
end
if freed > 0 then redis.call('DECRBY', KEYS[4], freed) end
if #out > 1 then
  if redis.call('PTTL', KEYS[5]) < leaseMs then redis.call('PEXPIRE', KEYS[5], leaseMs) end
  redis.call('SADD', KEYS[6], ARGV[1])
  if redis.call('PTTL', KEYS[6]) < leaseMs then redis.call('PEXPIRE', KEYS[6], leaseMs) end
end
out[1] = expired
return out`;

// KEYS: queue, index, sizes, bytes, leased. ARGV: userId, token, ids. The
// messages were written to a socket: they leave the store, if this lease
// still holds them (a lease taken over after its timeout is not ours).
const CONFIRM = `local mine = {}
for i = 3, #ARGV do
  local held = redis.call('HGET', KEYS[5], ARGV[i])
  if held and string.sub(held, 1, #ARGV[2] + 1) == ARGV[2] .. ' ' then
    mine[ARGV[i]] = true
    redis.call('HDEL', KEYS[5], ARGV[i])
  end
end
local freed = 0
for _, it in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local id, size = string.match(it, '^(%S+) (%d+) ')
  if mine[id] then
    redis.call('LREM', KEYS[1], 1, it)
    local member = ARGV[1] .. ' ' .. id
    if redis.call('ZSCORE', KEYS[2], member) then
      redis.call('ZREM', KEYS[2], member)
      redis.call('HDEL', KEYS[3], member)
      freed = freed + tonumber(size)
    end
  end
end
if freed > 0 then redis.call('DECRBY', KEYS[4], freed) end
return freed`;

// KEYS: leased. ARGV: token, ids. Not written: the next take gets them.
const UNLEASE = `local n = 0
for i = 2, #ARGV do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n`;

// KEYS: owned. ARGV: leased key prefix, owner. A worker that took the
// place of a dead one (same host, same slot) frees its predecessor's leases.
const UNLEASE_OWNER = `local n = 0
for _, userId in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. userId
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if string.sub(all[i + 1], 1, #ARGV[2] + 1) == ARGV[2] .. ':' then
      n = n + redis.call('HDEL', key, all[i])
    end
  end
end
redis.call('DEL', KEYS[1])
return n`;

// KEYS: index, sizes, bytes.
const SWEEP = `${NOW}
${FORGET}
return sweep()`;

// KEYS: idem key. ARGV: "<id> <fingerprint>", windowMs. Returns nil for a
// first claim, else the winner's "<id> <fingerprint>" (or "<id>" alone, for
// a key stored before fingerprints were kept).
const CLAIM = `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])`;

// KEYS: idem key. ARGV: id. Deletes the key if that id holds it.
const RELEASE = `local v = redis.call('GET', KEYS[1])
if v and (v == ARGV[1] or string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. ' ') then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/** With numberOfKeys unset, the first argument is the number of keys. */
type Script = (...args: (string | number)[]) => Promise<unknown>;
interface Scripts {
  ssPut: Script;
  ssConfirm: Script;
  ssUnlease: Script;
  ssUnleaseOwner: Script;
  ssSweep: Script;
  ssClaim: Script;
  ssRelease: Script;
}

export interface RedisStoreOptions {
  target: RedisTarget;
  prefix: string;
  maxPerUser: number;
  maxTotal: number;
  maxTotalBytes: number;
  idempotencyWindowMs: number;
  /** A command not answered within this fails (the caller falls back). */
  commandTimeoutMs: number;
  /**
   * Who takes messages (`<host id>:<slot>`): the same for a worker and the
   * one that replaces it, which frees the leases of its predecessor.
   */
  owner: string;
  /** A lease not confirmed within this is free for the next take (a whole host gone). */
  leaseMs: number;
  /** Expired messages removed by a sweep, for the metrics. */
  onSweep?: (expired: number) => void;
}

export interface RedisStore extends DeliveryStore {
  readonly redis: RedisClient;
  /** Resolves when connected, or after `ms` (the store then fails until Redis is back). */
  ready(ms: number): Promise<boolean>;
  sweep(): Promise<number>;
}

export function parseEntry(entry: string): StoredMessage {
  const nl1 = entry.indexOf("\n");
  const nl2 = entry.indexOf("\n", nl1 + 1);
  const [id, , expiresAt, storedAt] = entry.slice(0, nl1).split(" ");
  return {
    id: id!,
    event: entry.slice(nl1 + 1, nl2),
    payloadJson: entry.slice(nl2 + 1),
    storedAt: Number(storedAt),
    expiresAt: Number(expiresAt),
  };
}

/** Buckets of the store on a Redis Cluster (see above). */
export const CLUSTER_BUCKETS = 16;

/** The store's bucket of a user on a cluster (FNV-1a of the id). */
export function deliveryBucket(userId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < userId.length; i++) {
    h ^= userId.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % CLUSTER_BUCKETS;
}

/** The key prefix of a bucket: `{<prefix>:delivery:<bucket>}` on a cluster, else `<prefix>:delivery`. */
export function deliveryKeyBase(prefix: string, cluster: boolean, bucket: number): string {
  return cluster ? `{${prefix}:delivery:${bucket}}` : `${prefix}:delivery`;
}

/**
 * A take carries the user's whole backlog (up to OFFLINE_MAX_PER_USER
 * messages of up to MAX_PAYLOAD_BYTES each), so it gets longer than the
 * other commands' timeout: a 20 MB take on a busy worker took over the
 * 1 s QUERY_TIMEOUT_MS, the register went without its replay, and the
 * messages, leased by the take Redis had run, waited out the lease. A
 * Redis that is down still fails the take at once (no offline queue).
 */
const TAKE_TIMEOUT_MS = 10_000;
const TAKE_SHA = createHash("sha1").update(TAKE).digest("hex");

export function createRedisStore(opts: RedisStoreOptions): RedisStore {
  const redis = createStoreClient(opts.target, {
    connectionName: "socket-server:delivery",
    commandTimeoutMs: opts.commandTimeoutMs,
  });
  redis.defineCommand("ssPut", { lua: PUT });
  redis.defineCommand("ssConfirm", { lua: CONFIRM });
  redis.defineCommand("ssUnlease", { lua: UNLEASE, numberOfKeys: 1 });
  redis.defineCommand("ssUnleaseOwner", { lua: UNLEASE_OWNER, numberOfKeys: 1 });
  redis.defineCommand("ssSweep", { lua: SWEEP, numberOfKeys: 3 });
  redis.defineCommand("ssClaim", { lua: CLAIM, numberOfKeys: 1 });
  redis.defineCommand("ssRelease", { lua: RELEASE, numberOfKeys: 1 });
  const s = redis as unknown as Scripts;
  // TAKE with its own timeout: ioredis keeps the first timeout a command is given.
  const { Command } = loadIoredis();
  const takeScript = async (keys: string[], args: string[]): Promise<unknown> => {
    const send = (name: "evalsha" | "eval", script: string) => {
      const command = new Command(name, [script, keys.length, ...keys, ...args], {
        replyEncoding: "utf8",
      });
      command.setTimeout(Math.max(TAKE_TIMEOUT_MS, opts.commandTimeoutMs));
      return redis.sendCommand(command);
    };
    try {
      return await send("evalsha", TAKE_SHA);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      return send("eval", TAKE);
    }
  };

  const cluster = opts.target.kind === "cluster";
  const buckets = cluster ? CLUSTER_BUCKETS : 1;
  const bucketOf = (userId: string) => (cluster ? deliveryBucket(userId) : 0);
  const k = (bucket: number, name: string) =>
    `${deliveryKeyBase(opts.prefix, cluster, bucket)}:${name}`;
  const idem = (key: string) => `${opts.prefix}:delivery:idem:${key}`;
  const totals = (b: number) => [k(b, "index"), k(b, "sizes"), k(b, "bytes")];
  const queue = (userId: string) => k(bucketOf(userId), `q:${userId}`);
  const leased = (userId: string) => k(bucketOf(userId), `leased:${userId}`);
  const owned = (b: number) => k(b, `owned:${opts.owner}`);
  // Each bucket holds its share of the global bounds.
  const maxTotal = Math.ceil(opts.maxTotal / buckets);
  const maxTotalBytes = Math.ceil(opts.maxTotalBytes / buckets);
  const allBuckets = Array.from({ length: buckets }, (_, b) => b);
  let leases = 0;

  const putInBucket = async (b: number, users: string[], message: StoredMessage) => {
    const keys = [...totals(b), ...users.map(queue)];
    const size = Buffer.byteLength(message.payloadJson) + message.event.length;
    return (await s.ssPut(
      keys.length,
      ...keys,
      opts.maxPerUser,
      maxTotal,
      maxTotalBytes,
      message.id,
      size,
      Math.max(1, message.expiresAt - message.storedAt),
      `${message.event}\n${message.payloadJson}`,
      ...users,
    )) as number[];
  };

  return {
    kind: "redis",
    redis,
    async ready(ms) {
      const up = await waitForReady(redis, ms);
      // This worker replaces any earlier one of its slot on this host: what
      // that one had taken and not confirmed is free for the next take.
      if (up) {
        await Promise.all(
          allBuckets.map((b) => s.ssUnleaseOwner(owned(b), k(b, "leased:"), opts.owner)),
        ).catch(() => {});
      }
      return up;
    },
    async put(userIds, message) {
      const byBucket = new Map<number, string[]>();
      for (const u of new Set(userIds)) {
        const b = bucketOf(u);
        byBucket.set(b, [...(byBucket.get(b) ?? []), u]);
      }
      const groups = [...byBucket];
      const settled = await Promise.allSettled(
        groups.map(([b, users]) => putInBucket(b, users, message)),
      );
      const results = settled.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      const sum = (i: number) => results.reduce((n, r) => n + r[i]!, 0);
      if (sum(3) > 0) opts.onSweep?.(sum(3));
      const done = {
        stored: sum(0),
        droppedOldest: sum(1),
        refused: sum(2),
      } satisfies OfflinePutResult;
      const failed = settled.flatMap((r, i) => (r.status === "rejected" ? [i] : []));
      if (failed.length === 0) return done;
      const reason = (settled[failed[0]!] as PromiseRejectedResult).reason;
      if (results.length === 0) throw reason;
      throw new PartialPutError(
        done,
        failed.flatMap((i) => groups[i]![1]),
        reason,
      );
    },
    async take(userId) {
      const b = bucketOf(userId);
      const keys = [queue(userId), ...totals(b), leased(userId), owned(b)];
      leases += 1;
      const token = `${opts.owner}:${leases}:${randomBytes(4).toString("hex")}`;
      const r = (await takeScript(keys, [userId, token, String(opts.leaseMs)])) as [
        number,
        ...string[],
      ];
      const [expired, ...entries] = r;
      if (entries.length === 0) return { ...nothingTaken, expired };
      const messages = entries.map(parseEntry);
      let confirmed = 0;
      const confirm = async (written = messages.length) => {
        const ids = messages.slice(confirmed, written).map((m) => m.id);
        if (ids.length === 0) return;
        const cKeys = [queue(userId), ...totals(b), leased(userId)];
        await s.ssConfirm(cKeys.length, ...cKeys, userId, token, ...ids);
        confirmed = written;
      };
      return {
        messages,
        expired,
        confirm,
        async restore(written = 0) {
          await confirm(written);
          const ids = messages.slice(Math.max(written, confirmed)).map((m) => m.id);
          if (ids.length > 0) await s.ssUnlease(leased(userId), token, ...ids);
        },
      } satisfies TakenMessages;
    },
    async claim(key, id, fingerprint) {
      const held = (await s.ssClaim(idem(key), `${id} ${fingerprint}`, opts.idempotencyWindowMs)) as
        | string
        | null;
      if (held === null) return { duplicate: false } satisfies IdemClaimResult;
      const [originalId = "", stored] = held.split(" ");
      return {
        duplicate: true,
        originalId,
        ...(stored ? { fingerprint: stored } : {}),
      } satisfies IdemClaimResult;
    },
    async release(key, id) {
      await s.ssRelease(idem(key), id);
    },
    async sweep() {
      const counts = (await Promise.all(
        allBuckets.map((b) => s.ssSweep(...totals(b))),
      )) as number[];
      const n = counts.reduce((a, c) => a + c, 0);
      if (n > 0) opts.onSweep?.(n);
      return n;
    },
    async close() {
      redis.disconnect();
    },
  };
}
