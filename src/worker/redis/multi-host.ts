import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "pino";
import type { Adapter } from "socket.io-adapter";
import type { Config } from "../../shared/config.js";
import type { ClusterClient } from "../cluster-client.js";
import { createHostsAdapter } from "./hosts-adapter.js";
import { createHostsCluster, type HostsCluster } from "./hosts-cluster.js";
import { createRedisLink, type RedisLink } from "./redis-link.js";

/**
 * Multi-host mode (REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS): what a worker needs to behave as part of one
 * system with the other hosts, in one object for create-worker to wire:
 * - `adapter`: the Socket.IO adapter (cluster adapter in the host, Redis
 *   between hosts; see hosts-adapter.ts);
 * - `cluster`: cluster queries that also ask every other host (see
 *   hosts-cluster.ts), a drop-in for the IPC cluster client;
 * - `redisState()` for the worker's load report (the primary's /ready says
 *   503 "redis unreachable" while any worker reports "down").
 */

export interface MultiHost {
  hostId: string;
  // biome-ignore lint/suspicious/noExplicitAny: socket.io's adapter factory takes its Namespace
  adapter: (nsp: any) => Adapter;
  cluster: HostsCluster;
  link: RedisLink;
  redisState(): "up" | "down";
  /** Why Redis is down, for /ready (undefined while up). */
  redisDownReason(): string | undefined;
  /** Messages to other hosts dropped because Redis was unreachable. */
  droppedMessages(): number;
  /** Waits (bounded) for Redis and a first look at the host registry. */
  start(timeoutMs: number): Promise<void>;
  /** `hostGone`: the whole host is shutting down (not one worker restarting). */
  close(hostGone?: boolean): Promise<void>;
}

/**
 * Workers of one host agree on its id without talking: they share the
 * primary (their parent) and the machine. Unique among live hosts, readable
 * in `missingHosts`.
 */
export function defaultHostId(): string {
  return `${hostname()}:${process.ppid}`;
}

export function setupMultiHost(deps: {
  cfg: Config;
  log: Logger;
  slot: number;
  local: ClusterClient;
  hostId?: string;
}): MultiHost {
  const { cfg, log } = deps;
  if (!cfg.redis)
    throw new Error("setupMultiHost needs REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS");
  const hostId = deps.hostId ?? defaultHostId();
  const prefix = cfg.REDIS_KEY_PREFIX;
  const link = createRedisLink({
    target: cfg.redis,
    log,
    name: `${prefix}:${hostId}:w${deps.slot}:${randomBytes(3).toString("hex")}`,
  });
  let dropped = 0;
  const adapter = createHostsAdapter({
    link,
    hostId,
    prefix: `${prefix}:sio`,
    mode: cfg.redisAdapterMode,
    // Only a Redis Cluster client retries commands on its own (a failover).
    ordered: cfg.redis.kind === "cluster",
    log,
    onPublishFailure: () => {
      dropped += 1;
    },
  });
  const cluster = createHostsCluster({ link, local: deps.local, hostId, prefix, log });
  return {
    hostId,
    adapter,
    cluster,
    link,
    redisState: () => (link.up() ? "up" : "down"),
    redisDownReason: () => link.downReason(),
    droppedMessages: () => dropped,
    async start(timeoutMs) {
      if (!(await link.whenUp(timeoutMs))) return;
      await cluster.refresh();
      cluster.announce();
    },
    async close(hostGone = false) {
      if (hostGone) await cluster.leave();
      cluster.close();
      await link.close();
    },
  };
}
