import type { RedisClient } from "../redis/redis-clients.js";
import type { Logger } from "pino";
import type { Config } from "../../shared/config.js";
import {
  isRevocationEntry,
  type RevocationEntry,
  RevocationList,
  type TokenIdentity,
} from "../../shared/revocation-list.js";
import type { AuthService } from "../auth/auth-service.js";
import { disconnectWith, type GatewayServer } from "../gateway/gateway.js";
import type { WorkerChannel } from "../ipc-channel.js";

/**
 * This worker's copy of the revocation list and how it stays complete:
 *
 * - `POST /api/tokens/revoke` becomes a `revoke` cluster query: every worker
 *   of this host applies it (`apply`) — and with REDIS_URL every worker of
 *   every live host, through the hosts cluster — and each host's primary
 *   keeps it and hands the whole list to any worker that (re)starts
 *   (`ss:revocations`);
 * - with REDIS_URL the entry is also written to a sorted set (score: until),
 *   for what a query cannot reach: a host that is down or cut off from Redis
 *   when the revocation is made, or one that starts later. A worker reads the
 *   set when it starts and whenever Redis comes back; an entry it could not
 *   write during an outage is written when Redis is back, and published on
 *   the same key, so that hosts already connected learn it too.
 *
 * Applying an entry disconnects the local sockets whose token it covers,
 * with AUTH_REVOKED.
 */

/** What this module needs of the worker's Redis link (src/worker/redis/redis-link.ts). */
export interface SharedRedis {
  readonly pub: RedisClient;
  up(): boolean;
  onChange(listener: (up: boolean) => void): void;
  /** Subscribed again after every reconnect. */
  subscribe(
    kind: "channel",
    name: string,
    handler: (channel: string, message: Buffer) => void,
  ): void;
}

export interface Revocations {
  isRevoked(t: TokenIdentity): boolean;
  /** Adds the entry; disconnects the local holders; returns how many. */
  apply(e: RevocationEntry): number;
  /** Writes the entry to Redis for hosts a query cannot reach now; false if Redis is down. */
  share(e: RevocationEntry): Promise<boolean>;
  /** Verification that also refuses revoked tokens (AUTH_REVOKED). */
  guard(auth: AuthService): AuthService;
  /** Loads the shared list (Redis), bounded in time; resolves either way. */
  start(timeoutMs: number): Promise<void>;
  size(): number;
  close(): void;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

export function createRevocations(deps: {
  io: GatewayServer;
  cfg: Config;
  log: Logger;
  primary: Pick<WorkerChannel, "send" | "answer">;
  redis?: SharedRedis;
}): Revocations {
  const { io, cfg, redis } = deps;
  const log = deps.log.child({ module: "revocations" });
  const list = new RevocationList();
  const key = `${cfg.REDIS_KEY_PREFIX}:revocations`;
  const unshared: RevocationEntry[] = [];

  /** Adds the entry and disconnects its local holders; -1 when the list already had it. */
  const apply = (e: RevocationEntry): number => {
    if (!list.add(e, nowSeconds())) return -1;
    let n = 0;
    for (const s of io.of("/").sockets.values()) {
      if (RevocationList.covers(e, s.data)) {
        disconnectWith(s, "AUTH_REVOKED");
        n++;
      }
    }
    if (n > 0) log.info({ sockets: n }, "disconnected holders of revoked tokens");
    return n;
  };
  /** Learned from Redis: this host's primary keeps it for restarts too. */
  const learn = (e: RevocationEntry) => {
    if (apply(e) >= 0) deps.primary.send({ t: "ss:revocation-learned", entry: e });
  };

  // The host's list, from the primary, when this worker is ready (before its first connection).
  const stopAnswering = deps.primary.answer("ss:revocations", ({ entries }) => {
    let added = 0;
    for (const e of entries) if (apply(e) >= 0) added++;
    return { added };
  });

  const pruneTimer = setInterval(() => list.prune(nowSeconds()), 60_000);
  pruneTimer.unref();

  const load = async () => {
    if (!redis) return;
    const raw = await redis.pub.zrangebyscore(key, nowSeconds() + 1, "+inf");
    for (const text of raw) {
      try {
        const e: unknown = JSON.parse(text);
        if (isRevocationEntry(e)) learn(e);
      } catch {
        // A foreign member in our key: ignore it.
      }
    }
  };
  const write = async (e: RevocationEntry) => {
    if (!redis) return;
    const text = JSON.stringify(e);
    await redis.pub
      .multi()
      .zadd(key, e.until, text)
      .zremrangebyscore(key, "-inf", nowSeconds())
      .publish(key, text)
      .exec();
  };
  // The publish reaches hosts the revoke query did not (one written after an
  // outage, for instance); an entry a worker has already is a no-op.
  redis?.subscribe("channel", key, (_channel, message) => {
    try {
      const e: unknown = JSON.parse(message.toString());
      if (isRevocationEntry(e)) learn(e);
    } catch {
      log.warn("ignored a malformed revocation message");
    }
  });

  redis?.onChange((up) => {
    if (!up) return;
    // Back: write what could not be shared, read what was missed.
    const pending = unshared.splice(0);
    void Promise.all(pending.map(write))
      .then(load)
      .catch((err: unknown) => {
        unshared.push(...pending);
        log.warn({ err }, "could not resync revocations with Redis");
      });
  });

  return {
    isRevoked: (t) => list.size > 0 && list.isRevoked(t, nowSeconds()),
    apply: (e) => Math.max(0, apply(e)),
    async share(e) {
      if (!redis) return true;
      try {
        await write(e);
        return true;
      } catch (err) {
        unshared.push(e);
        log.warn({ err }, "revocation not shared with other hosts yet (Redis unreachable)");
        return false;
      }
    },
    guard(auth) {
      return {
        get mode() {
          return auth.mode;
        },
        stats: () => auth.stats(),
        close: () => auth.close(),
        verify: async (token) => {
          const r = await auth.verify(token);
          if (r.ok && list.size > 0 && list.isRevoked(r.claims, nowSeconds())) {
            return { ok: false, code: "AUTH_REVOKED", reason: "revoked" };
          }
          return r;
        },
      };
    },
    async start(timeoutMs) {
      if (!redis) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        load().catch((err: unknown) => log.warn({ err }, "could not load revocations from Redis")),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    },
    size: () => list.size,
    close() {
      clearInterval(pruneTimer);
      stopAnswering();
    },
  };
}
