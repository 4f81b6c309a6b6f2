import type { Logger } from "pino";
import type { PresenceChange } from "../../shared/ipc.js";
import { CLUSTER_BUCKETS, deliveryBucket } from "../push/redis-store.js";
import type { RedisLink } from "../redis/redis-link.js";
import type { PresenceBackend } from "./room-presence.js";

/**
 * Presence with Redis: who is in each presence room, seen alike by every
 * host, and surviving the crash of any of them.
 *
 * Every worker is a *holder* (`<host>:<slot>:<random>`, new per process)
 * with a lease in `<prefix>:presence:holders` (a sorted set scored by the
 * lease's end on Redis' clock), renewed every third of PRESENCE_LEASE_MS.
 * Under `<base>` (`{<prefix>:presence:<bucket>}` on a Redis Cluster, where
 * a room's keys share its bucket's slot; `<prefix>:presence` elsewhere):
 * - `u:<room>`     HASH userId → how many holders hold the user (0: leaving);
 * - `held:<holder>` SET `<room>\n<userId>` that holder holds;
 * - `leaving`      ZSET `<room>\n<userId>` → when the leave is due.
 *
 * One script applies a worker's changes in order: the first holder of a
 * user who is not leaving is a join; the last one out starts the delay.
 * When a leave is due, one script takes it (so exactly one worker of all
 * hosts emits each `presence:leave`): each worker looks every tick and when
 * its own leaves fall due. A holder whose lease ran out (a worker or host
 * killed with kill -9, a partition) is let go of by whichever worker sees
 * it first: its users leave after the delay unless someone else holds them.
 * After an outage (or having been let go of) a worker puts Redis right
 * again from its own sockets: what it holds there and not here is let go of,
 * what it holds here and not there is taken (and joins, if news).
 */

const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

// KEYS: leaving, held (the holder's), then one users hash per change.
// ARGV: delayMs, then per change: op (+ or -), room, userId. Returns the joins.
const APPLY = `${NOW}
local delay = tonumber(ARGV[1])
local joins = {}
for i = 3, #KEYS do
  local j = (i - 3) * 3 + 2
  local room, user = ARGV[j + 1], ARGV[j + 2]
  local member = room .. '\\n' .. user
  if ARGV[j] == '+' then
    if redis.call('SADD', KEYS[2], member) == 1
      and redis.call('HINCRBY', KEYS[i], user, 1) == 1
      and redis.call('ZREM', KEYS[1], member) == 0 then
      joins[#joins + 1] = member
    end
  elseif redis.call('SREM', KEYS[2], member) == 1 then
    if redis.call('HINCRBY', KEYS[i], user, -1) <= 0 then
      redis.call('HSET', KEYS[i], user, 0)
      redis.call('ZADD', KEYS[1], now + delay, member)
    end
  end
end
return joins`;

// KEYS: leaving. ARGV: limit. The leaves due now.
const DUE = `${NOW}
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))`;

// KEYS: leaving, then one users hash per member. ARGV: the members. Takes
// the leaves still due and still unheld; returns them (the leaves to emit).
const FINISH = `${NOW}
local left = {}
for i = 2, #KEYS do
  local member = ARGV[i - 1]
  local due = redis.call('ZSCORE', KEYS[1], member)
  if due and tonumber(due) <= now then
    redis.call('ZREM', KEYS[1], member)
    local user = string.sub(member, string.find(member, '\\n', 1, true) + 1)
    local n = redis.call('HGET', KEYS[i], user)
    if n and tonumber(n) <= 0 then
      redis.call('HDEL', KEYS[i], user)
      left[#left + 1] = member
    end
  end
end
return left`;

// KEYS: holders. ARGV: holder, leaseMs. Renews the lease; returns whether
// it had run out (others may have let go of this holder), then the holders
// whose lease has.
const LEASE = `${NOW}
local mine = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local lapsed = (not mine or tonumber(mine) < now) and 1 or 0
return {lapsed, redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - 1, 'LIMIT', 0, 20)}`;

interface Scripts {
  ssPresenceApply(numKeys: number, ...args: (string | number)[]): Promise<string[]>;
  ssPresenceDue(key: string, limit: number): Promise<string[]>;
  ssPresenceFinish(numKeys: number, ...args: string[]): Promise<string[]>;
  ssPresenceLease(key: string, holder: string, leaseMs: number): Promise<[number, string[]]>;
}

/** Changes per script call: a few hundred keys at most. */
const CHUNK = 200;
const DUE_BATCH = 100;

const split = (member: string): [room: string, userId: string] => {
  const nl = member.indexOf("\n");
  return [member.slice(0, nl), member.slice(nl + 1)];
};

export function createRedisPresence(deps: {
  link: RedisLink;
  holder: string;
  cluster: boolean;
  prefix: string;
  leaseMs: number;
  leaveDelayMs: number;
  commandTimeoutMs: number;
  log: Logger;
  /** This worker's holds now, for putting Redis right. */
  held(): Iterable<{ room: string; userId: string }>;
  onNotice(kind: "join" | "leave", room: string, userId: string): void;
}): PresenceBackend {
  const { link, holder, cluster, log } = deps;
  const pub = link.pub;
  pub.defineCommand("ssPresenceApply", { lua: APPLY });
  pub.defineCommand("ssPresenceDue", { lua: DUE, numberOfKeys: 1 });
  pub.defineCommand("ssPresenceFinish", { lua: FINISH });
  pub.defineCommand("ssPresenceLease", { lua: LEASE, numberOfKeys: 1 });
  const s = pub as unknown as Scripts;

  const buckets = Array.from({ length: cluster ? CLUSTER_BUCKETS : 1 }, (_, b) => b);
  const bucketOf = (room: string) => (cluster ? deliveryBucket(room) : 0);
  const base = (b: number) =>
    cluster ? `{${deps.prefix}:presence:${b}}` : `${deps.prefix}:presence`;
  const usersKey = (room: string) => `${base(bucketOf(room))}:u:${room}`;
  const leavingKey = (b: number) => `${base(b)}:leaving`;
  const heldKey = (b: number, h: string) => `${base(b)}:held:${h}`;
  const holdersKey = `${deps.prefix}:presence:holders`;

  /** The changes and resyncs sent, one after the other (never rejects: a failure marks `dirty`). */
  let inFlight = Promise.resolve();
  /** Redis may not match this worker's sockets (an outage, a lapsed lease): put it right. */
  let dirty = false;
  let leased = false;
  let closed = false;
  const timers = new Set<NodeJS.Timeout>();

  const later = (ms: number, fn: () => Promise<void>) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn().catch(() => {});
    }, ms);
    t.unref();
    timers.add(t);
  };

  /** Applies `ops` as holder `h` in bucket `b`, in order; emits the joins. */
  async function applyInBucket(b: number, h: string, ops: [string, string, string][]) {
    for (let i = 0; i < ops.length; i += CHUNK) {
      const chunk = ops.slice(i, i + CHUNK);
      const keys = [leavingKey(b), heldKey(b, h), ...chunk.map(([, room]) => usersKey(room))];
      const joins = await s.ssPresenceApply(
        keys.length,
        ...keys,
        deps.leaveDelayMs,
        ...chunk.flat(),
      );
      for (const m of joins) deps.onNotice("join", ...split(m));
    }
    // Leaves started here fall due after the delay: look then (the tick would, later).
    if (ops.some(([op]) => op === "-")) later(deps.leaveDelayMs + 20, () => finishDue(b));
  }

  const byBucket = (ops: [string, string, string][]) => {
    const out = new Map<number, [string, string, string][]>();
    for (const op of ops) {
      const b = bucketOf(op[1]);
      const list = out.get(b);
      if (list) list.push(op);
      else out.set(b, [op]);
    }
    return out;
  };

  async function finishDue(b: number): Promise<void> {
    for (;;) {
      const due = await s.ssPresenceDue(leavingKey(b), DUE_BATCH);
      if (due.length === 0) return;
      const keys = [leavingKey(b), ...due.map((m) => usersKey(split(m)[0]))];
      const left = await s.ssPresenceFinish(keys.length, ...keys, ...due);
      for (const m of left) deps.onNotice("leave", ...split(m));
      if (due.length < DUE_BATCH) return;
    }
  }

  /** Lets go of everything holder `h` holds (a lapsed holder's, or this one's own leftovers). */
  async function release(h: string, keep?: Set<string>): Promise<void> {
    for (const b of buckets) {
      const members = await pub.smembers(heldKey(b, h));
      const ops = members
        .filter((m) => !keep?.has(m))
        .map((m): [string, string, string] => ["-", ...split(m)]);
      if (ops.length > 0) await applyInBucket(b, h, ops);
    }
  }

  /** Redis as this worker's sockets say: lets go of what is not here, takes what is. */
  async function resync(): Promise<void> {
    dirty = false;
    const here = new Set<string>();
    for (const { room, userId } of deps.held()) here.add(`${room}\n${userId}`);
    try {
      await release(holder, here);
      const ops = [...here].map((m): [string, string, string] => ["+", ...split(m)]);
      await Promise.all([...byBucket(ops)].map(([b, list]) => applyInBucket(b, holder, list)));
    } catch (err) {
      dirty = true;
      throw err;
    }
  }

  async function tick(): Promise<void> {
    if (closed || !link.up()) return;
    const [lapsed, gone] = await s.ssPresenceLease(holdersKey, holder, deps.leaseMs);
    if (lapsed === 1 && leased) {
      // Others may have let go of this worker's users meanwhile: take them again.
      log.warn("presence lease had run out (Redis unreachable or this worker stalled); resyncing");
      dirty = true;
    }
    leased = true;
    // In line with the changes: a leave applied during the resync stays applied.
    if (dirty) {
      const done = inFlight.then(resync);
      inFlight = done.catch(() => {});
      await done;
    }
    for (const h of gone) {
      if (h === holder) continue;
      await release(h);
      await pub.zrem(holdersKey, h);
      log.info(
        { holder: h },
        "presence: a worker's lease ran out; its users leave after the delay",
      );
    }
    for (const b of buckets) await finishDue(b);
  }

  let ticking = false;
  const interval = setInterval(
    () => {
      if (ticking) return;
      ticking = true;
      tick()
        .catch((err: unknown) => log.debug({ err }, "presence tick failed"))
        .finally(() => {
          ticking = false;
        });
    },
    Math.min(1_000, Math.floor(deps.leaseMs / 3)),
  );
  interval.unref();
  // Back from an outage: changes made meanwhile never reached Redis.
  link.onChange((up) => {
    if (up && leased) dirty = true;
  });

  return {
    apply(changes: PresenceChange[]) {
      if (!leased || dirty) {
        // Not in the registry yet, or out of step: the next tick puts it all right.
        dirty = true;
        return;
      }
      const ops = changes.map(([room, userId, present]): [string, string, string] => [
        present ? "+" : "-",
        room,
        userId,
      ]);
      // One batch after the other: a user's enter and exit stay in order.
      inFlight = inFlight.then(() =>
        Promise.all([...byBucket(ops)].map(([b, list]) => applyInBucket(b, holder, list))).then(
          () => {},
          (err: unknown) => {
            dirty = true;
            log.debug({ err }, "presence change not applied; resyncing when Redis answers");
          },
        ),
      );
    },
    async list(room) {
      return pub.hkeys(usersKey(room));
    },
    async counts(rooms) {
      const n = await Promise.all(rooms.map((r) => pub.hlen(usersKey(r))));
      return Object.fromEntries(rooms.map((r, i) => [r, n[i]!]));
    },
    async start() {
      if (link.up()) await tick().catch(() => {});
    },
    async close() {
      closed = true;
      clearInterval(interval);
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await Promise.race([inFlight, new Promise((r) => setTimeout(r, deps.commandTimeoutMs))]);
      // The sockets have closed: let go of anything still held, then leave
      // the registry (with something left behind, the lease runs out instead
      // and another worker lets go of it).
      if (dirty || !link.up()) return;
      await release(holder)
        .then(() => pub.zrem(holdersKey, holder))
        .catch(() => {});
    },
  };
}
