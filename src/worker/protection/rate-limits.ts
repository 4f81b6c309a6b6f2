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

export function createRateLimits(deps: {
  cfg: Config;
  log: Logger;
  redis?: RedisClient;
}): RateLimits {
  const { cfg, redis } = deps;
  const log = deps.log.child({ module: "rate-limits" });
  const perWorkerIp = Math.max(1, Math.ceil(cfg.RATE_CONNECTIONS_PER_IP_PER_MINUTE / cfg.WORKERS));

  const limiter = (
    name: string,
    points: number,
    duration: number,
    localPoints: number,
  ): RateLimiterAbstract => {
    const memory = new RateLimiterMemory({ keyPrefix: name, points: localPoints, duration });
    if (!redis) return memory;
    return new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: `${cfg.REDIS_KEY_PREFIX}:rl:${name}`,
      points,
      duration,
      rejectIfRedisNotReady: true,
      insuranceLimiter: memory,
    });
  };
  const ip = limiter("ip", cfg.RATE_CONNECTIONS_PER_IP_PER_MINUTE, 60, perWorkerIp);
  const push = limiter(
    "push",
    cfg.RATE_PUSHES_PER_KEY_PER_SECOND,
    1,
    cfg.RATE_PUSHES_PER_KEY_PER_SECOND,
  );

  const check = async (l: RateLimiterAbstract, key: string): Promise<number | undefined> => {
    try {
      await l.consume(key);
      return undefined;
    } catch (res) {
      if (res instanceof RateLimiterRes) return Math.max(0.001, res.msBeforeNext / 1000);
      // Only without an insurance limiter; never refuse because the store failed.
      log.warn({ err: res }, "rate limiter store failed; allowing");
      return undefined;
    }
  };
  return {
    connection: (address) => check(ip, address),
    push: (apiKeyId) => check(push, apiKeyId),
  };
}
