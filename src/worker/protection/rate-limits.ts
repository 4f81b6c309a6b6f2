import type { RedisClient } from "../redis/redis-clients.js";
import type { Logger } from "pino";
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
} from "rate-limiter-flexible";
import type { Config } from "../../shared/config.js";

/**
 * The keyed rate limits (rate-limiter-flexible): connections per client IP at
 * the handshake and pushes per API key. In memory per worker, or in Redis with
 * REDIS_URL (cluster- and host-wide), with an in-memory insurance limiter that
 * takes over while Redis is unreachable, so an outage never refuses traffic
 * on its own.
 *
 * A check never waits on Redis for long: while the worker's Redis link is
 * down (an outage, a cluster shard failing over) the memory limiter decides
 * at once, and a Redis answer slower than RATE_LIMIT_REDIS_WAIT_MS is not
 * waited for (the memory limiter decides that one too). Without this a push
 * taken during a failover waited seconds for the retries of its rate check.
 *
 * Without Redis the per-IP budget is split over the workers: the primary
 * spreads new handshakes round-robin, so each worker sees its share. The push
 * budget is not split: one keep-alive connection from a backend lands on one
 * worker and must get the whole budget.
 */

export interface RateLimits {
  /** Undefined when allowed, else seconds until the next attempt may pass. */
  connection(ip: string): Promise<number | undefined>;
  push(apiKeyId: string): Promise<number | undefined>;
}

interface Limiter {
  memory: RateLimiterAbstract;
  redis?: RateLimiterAbstract;
}

export function createRateLimits(deps: {
  cfg: Config;
  log: Logger;
  redis?: RedisClient;
  /** Whether the worker's Redis link is up now (src/worker/redis/redis-link.ts). */
  redisUp?: () => boolean;
}): RateLimits {
  const { cfg, redis } = deps;
  const redisUp = deps.redisUp ?? (() => true);
  const log = deps.log.child({ module: "rate-limits" });
  const perWorkerIp = Math.max(1, Math.ceil(cfg.RATE_CONNECTIONS_PER_IP_PER_MINUTE / cfg.WORKERS));

  const limiter = (
    name: string,
    points: number,
    duration: number,
    localPoints: number,
  ): Limiter => {
    const memory = new RateLimiterMemory({ keyPrefix: name, points: localPoints, duration });
    if (!redis) return { memory };
    const shared = new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: `${cfg.REDIS_KEY_PREFIX}:rl:${name}`,
      points,
      duration,
      rejectIfRedisNotReady: true,
    });
    return { memory, redis: shared };
  };
  const ip = limiter("ip", cfg.RATE_CONNECTIONS_PER_IP_PER_MINUTE, 60, perWorkerIp);
  const push = limiter(
    "push",
    cfg.RATE_PUSHES_PER_KEY_PER_SECOND,
    1,
    cfg.RATE_PUSHES_PER_KEY_PER_SECOND,
  );

  /** Redis' verdict, or undefined when Redis did not give one in time (the memory limiter decides). */
  const shared = async (l: RateLimiterAbstract, key: string) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), cfg.RATE_LIMIT_REDIS_WAIT_MS);
    });
    try {
      return await Promise.race([l.consume(key), late]);
    } catch (res) {
      if (res instanceof RateLimiterRes) throw res;
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  };
  const check = async (l: Limiter, key: string): Promise<number | undefined> => {
    try {
      if (l.redis && redisUp() && (await shared(l.redis, key))) return undefined;
      await l.memory.consume(key);
      return undefined;
    } catch (res) {
      if (res instanceof RateLimiterRes) return Math.max(0.001, res.msBeforeNext / 1000);
      // Never refuse because the store failed.
      log.warn({ err: res }, "rate limiter store failed; allowing");
      return undefined;
    }
  };
  return {
    connection: (address) => check(ip, address),
    push: (apiKeyId) => check(push, apiKeyId),
  };
}
