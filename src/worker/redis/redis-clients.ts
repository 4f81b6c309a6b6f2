import { createRequire } from "node:module";
import type * as IORedis from "ioredis";
import type { RedisOptions } from "ioredis";
import type { RedisTarget } from "../../shared/redis-target.js";

/**
 * Every Redis client of a worker is made here, from the configured target:
 * - `url`: one server (`new Redis(url)`), as before;
 * - `sentinel`: ioredis' Sentinel support asks the sentinels for the master
 *   on every (re)connect, so a host follows a failover by itself: a killed
 *   master drops the connection, and a demoted one is told by the sentinels
 *   to drop its clients (CLIENT KILL after REPLICAOF). ioredis'
 *   `failoverDetector` is off: in ioredis 6.0 its `+switch-master` handler
 *   aborts a reconnect already under way, and that client then ends for
 *   good (seen here with kill -9 of the master: 5 of 12 clients stuck);
 * - `cluster`: ioredis' Cluster client. It follows slot moves and failovers
 *   (MOVED/ASK, CLUSTER SLOTS refreshes); `shardedSubscribers` gives each
 *   master its own subscriber connection for SSUBSCRIBE.
 *
 * The caller's options (offline queue, retries, timeouts) apply to every
 * connection, cluster nodes included.
 */

export type RedisClient = IORedis.Redis | IORedis.Cluster;

let ioredis: typeof IORedis | undefined;

/**
 * ioredis, loaded on first use: a worker without Redis never loads it (about
 * 130 ms of CPU at every worker start, measured with `--cpu-prof`).
 */
export function loadIoredis(): typeof IORedis {
  ioredis ??= createRequire(import.meta.url)("ioredis") as typeof IORedis;
  return ioredis;
}

export interface ClientOptions extends RedisOptions {
  connectionName: string;
  /** Cluster only: one subscriber per master for sharded pub/sub. */
  shardedSubscribers?: boolean;
}

export function isCluster(client: RedisClient): client is IORedis.Cluster {
  return client instanceof loadIoredis().Cluster;
}

/**
 * A connection that still points at a demoted master (a managed endpoint
 * whose name has moved, a Sentinel reconfiguration whose CLIENT KILL did not
 * reach us) gets READONLY for every write: reconnect, which finds the new
 * master (DNS, the sentinels). The failed command is not re-sent.
 */
const reconnectOnReadOnly = (err: Error) => err.message.startsWith("READONLY");

export function createRedisClient(target: RedisTarget, options: ClientOptions): RedisClient {
  const { shardedSubscribers, ...opts } = options;
  const { Cluster, Redis } = loadIoredis();
  if (target.kind === "url") {
    return new Redis(target.url, { reconnectOnError: reconnectOnReadOnly, ...opts });
  }
  const auth = {
    ...(target.auth.username ? { username: target.auth.username } : {}),
    ...(target.auth.password ? { password: target.auth.password } : {}),
    ...(target.auth.tls ? { tls: {} } : {}),
  };
  if (target.kind === "sentinel") {
    return new Redis({
      reconnectOnError: reconnectOnReadOnly,
      ...opts,
      ...auth,
      sentinels: target.sentinels,
      name: target.master,
      // TLS applies to the master; the sentinels are asked in plain text.
      enableTLSForSentinelMode: target.auth.tls,
      failoverDetector: false,
      sentinelRetryStrategy: (attempt: number) => Math.min(100 * 2 ** attempt, 2_000),
    });
  }
  const {
    enableOfflineQueue,
    retryStrategy,
    enableReadyCheck: _r,
    lazyConnect,
    ...nodeOptions
  } = opts;
  return new Cluster(target.nodes, {
    redisOptions: { ...nodeOptions, ...auth },
    ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
    ...(retryStrategy ? { clusterRetryStrategy: (n: number) => retryStrategy(n) ?? null } : {}),
    ...(lazyConnect !== undefined ? { lazyConnect } : {}),
    shardedSubscribers: shardedSubscribers ?? false,
    // With TLS, connect to the names the cluster announces rather than to
    // their addresses, so that the certificates' names match (managed
    // clusters such as ElastiCache announce host names).
    ...(target.auth.tls
      ? {
          dnsLookup: (address: string, done: (err: Error | null, address: string) => void) =>
            done(null, address),
        }
      : {}),
    // A failover is seen as soon as a command or a subscriber hits the dead
    // node; the periodic refresh catches the rest.
    slotsRefreshInterval: 2_000,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
  });
}

/**
 * A client for a store that has a fallback on the host (the offline store,
 * room history): commands fail at once while disconnected instead of
 * queueing, so the caller falls back and a push still answers; errors
 * surface on each command (the connection's own events would only repeat
 * them).
 */
export function createStoreClient(
  target: RedisTarget,
  opts: { connectionName: string; commandTimeoutMs: number },
): RedisClient {
  const client = createRedisClient(target, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: opts.commandTimeoutMs,
    retryStrategy: (times) => Math.min(100 * times, 2_000),
    lazyConnect: false,
    connectionName: opts.connectionName,
  });
  client.on("error", () => {});
  return client;
}
