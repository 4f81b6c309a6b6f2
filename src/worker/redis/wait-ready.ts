import type { RedisClient } from "./redis-clients.js";

/** Resolves true once the connection is ready (at once if it is), false after `ms`. */
export function waitForReady(redis: RedisClient, ms: number): Promise<boolean> {
  if (redis.status === "ready") return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      redis.off("ready", onReady);
      resolve(false);
    }, ms);
    const onReady = () => {
      clearTimeout(timer);
      resolve(true);
    };
    redis.once("ready", onReady);
  });
}
