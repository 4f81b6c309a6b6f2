import type { Logger } from "pino";
import type { Config } from "../../shared/config.js";
import type { Query } from "../../shared/ipc.js";
import { metrics } from "../../shared/metrics.js";
import type { ApiRoutes } from "../http/api-app.js";
import type { ClusterResult } from "../cluster-client.js";
import type { GatewayHooks, GatewayServer } from "../gateway/gateway.js";
import type { WorkerChannel } from "../ipc-channel.js";
import type { CustomQueryHandler } from "../local-queries.js";
import type { PushService } from "./push-service.js";
import type { HistoryRooms } from "../history/history-rooms.js";
import { sweepStaleAcks } from "./acks.js";
import { batchOpenApi, mountBatchRoute } from "../http/batch-route.js";
import type { DeliveryStore } from "./delivery-store.js";
import { withFallback } from "./fallback-store.js";
import { createDeliveryPipeline, type DeliveryPipeline, deliverStored } from "./pipeline.js";
import { createOnlineUsers, localOnlineUsers, ONLINE_USERS_QUERY } from "./online-users.js";
import { createPrimaryStoreClient } from "./primary-store-client.js";
import { createRedisStore } from "./redis-store.js";
import { createReplayHooks, REPLAY_LEASE_MS } from "./replay.js";
import { createStoredUsers } from "./stored-users.js";

/**
 * Wires the delivery guarantees into a worker: which store (the primary's,
 * or Redis with the primary's as fallback), who is online, the push pipeline,
 * replay on register, the batch route, and the periodic sweeps.
 */

export interface Delivery {
  store: DeliveryStore;
  pipeline: DeliveryPipeline;
  hooks: GatewayHooks;
  /** Custom cluster queries this worker answers (pass to createLocalQueries). */
  queries: Map<string, CustomQueryHandler>;
  /** POST /api/push/batch, for the API app's `routes`. */
  apiRoutes(push: PushService): ApiRoutes;
  /** Waits for Redis (if configured) until `ms` after creation; true when the store is up. */
  start(ms: number): Promise<boolean>;
  close(): Promise<void>;
}

const REDIS_SWEEP_INTERVAL_MS = 10_000;

export function createDelivery(deps: {
  io: GatewayServer;
  cfg: Config;
  log: Logger;
  /** Cluster queries: this host's, or every host's with REDIS_URL. */
  cluster: { query(q: Query, timeoutMs: number): Promise<ClusterResult> };
  /** IPC to this host's primary, which keeps the host's store. */
  primary: Pick<WorkerChannel, "call" | "on">;
  /** `<host id>:<slot>`: who holds the Redis leases of messages being replayed. */
  owner: string;
  /** History rooms, for pushes to them with an idempotencyKey. */
  history?: HistoryRooms;
}): Delivery {
  const { io, cfg, cluster } = deps;
  const log = deps.log.child({ module: "delivery" });

  // Which users have messages in the host's store: a register of anyone else asks nobody.
  const storedUsers = createStoredUsers({
    io,
    primary: deps.primary,
    log,
    onRegisteredStored(userIds) {
      for (const userId of userIds) {
        deliverStored(io, hostStore, userId).catch((err: unknown) =>
          log.warn({ err }, "could not deliver to a user registered as it was stored; kept"),
        );
      }
    },
  });
  const hostStore = createPrimaryStoreClient({
    primary: deps.primary,
    timeoutMs: cfg.QUERY_TIMEOUT_MS + 1_000,
    stored: storedUsers,
  });
  let store: DeliveryStore = hostStore;
  let sweepTimer: NodeJS.Timeout | undefined;
  const createdAt = Date.now();
  let redisReady: ((ms: number) => Promise<boolean>) | undefined;
  if (cfg.redis) {
    const redis = createRedisStore({
      target: cfg.redis,
      prefix: cfg.REDIS_KEY_PREFIX,
      maxPerUser: cfg.OFFLINE_MAX_PER_USER,
      maxTotal: cfg.OFFLINE_MAX_TOTAL,
      maxTotalBytes: cfg.OFFLINE_MAX_TOTAL_BYTES,
      idempotencyWindowMs: cfg.IDEMPOTENCY_WINDOW_SECONDS * 1_000,
      commandTimeoutMs: Math.max(cfg.QUERY_TIMEOUT_MS, 500),
      owner: deps.owner,
      leaseMs: REPLAY_LEASE_MS,
      onSweep: (n) => metrics.offlineExpired.inc(n),
    });
    redisReady = async (ms) => {
      const up = await redis.ready(Math.max(0, createdAt + ms - Date.now()));
      if (!up) log.warn("redis unreachable at start; offline messages stay on this host for now");
      return up;
    };
    store = withFallback(redis, hostStore, log);
    sweepTimer = setInterval(() => {
      redis.sweep().catch(() => {});
    }, REDIS_SWEEP_INTERVAL_MS);
    sweepTimer.unref();
  }

  const onlineUsers = createOnlineUsers({ cluster, timeoutMs: cfg.QUERY_TIMEOUT_MS });
  const stopAckSweep = sweepStaleAcks(io, cfg.ACK_TIMEOUT_MAX_MS + 10_000);

  return {
    store,
    pipeline: createDeliveryPipeline({ io, cfg, log, store, onlineUsers, history: deps.history }),
    hooks: createReplayHooks({
      store,
      log,
      highWaterBytes: Math.floor(cfg.MAX_BUFFERED_BYTES_PER_SOCKET / 2),
    }),
    queries: new Map([[ONLINE_USERS_QUERY, localOnlineUsers(io)]]),
    apiRoutes: (push) => ({
      mount: (router, helpers) => mountBatchRoute(router, helpers, { cfg, push }),
      openApi: batchOpenApi(cfg),
    }),
    async start(ms) {
      // Before this worker reports ready, so before it holds a socket.
      await storedUsers.load(ms);
      return redisReady?.(ms) ?? true;
    },
    async close() {
      storedUsers.close();
      stopAckSweep();
      if (sweepTimer) clearInterval(sweepTimer);
      await store.close();
    },
  };
}
