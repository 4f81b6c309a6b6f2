import type { Cluster, RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { metrics } from "../../shared/metrics.js";
import { describeRedisTarget, type RedisTarget } from "../../shared/redis-target.js";
import { clusterHealth } from "./cluster-health.js";
import { createRedisClient, type RedisClient } from "./redis-clients.js";

/**
 * A worker's two Redis connections (one to publish and run commands, one to
 * subscribe) and whether Redis is reachable.
 *
 * Outage behaviour is decided here, once, for everything that uses Redis
 * between hosts:
 * - Commands fail fast while Redis is unreachable (no offline queue): a
 *   cross-host message is dropped and counted, never buffered, so memory
 *   stays flat however long the outage lasts, and nothing is replayed late.
 *   Commands in flight when the connection drops are not re-sent either (a
 *   re-sent PUBLISH could deliver twice).
 * - Subscriptions are kept here, not in ioredis: after every (re)connect the
 *   wanted set is subscribed again, once. The set is what this worker needs
 *   now (its rooms), so an outage does not queue subscribe/unsubscribe churn.
 * - Reconnection never gives up: exponential backoff with jitter, 100 ms
 *   doubling to 5 s. A connection whose pending commands get no reply for
 *   5 s is dropped too, so a silent partition counts as an outage.
 * - The log says "unreachable" once per outage and "reachable again" once,
 *   with the reason and the duration, not once per failed message or retry.
 *
 * Authentication (`redis://user:password@host`) and TLS (`rediss://`) come
 * from the URL and are passed to ioredis as they are; the URL is never logged.
 *
 * With a Sentinel-managed master the two connections are the same, made by
 * ioredis' Sentinel support: a failover drops them, and the reconnect asks
 * the sentinels where the master is now.
 *
 * With Redis Cluster one ioredis Cluster client does everything: commands go
 * to the slot's master (MOVED/ASK handled by ioredis), classic SUBSCRIBE
 * uses its one subscriber connection, SSUBSCRIBE one connection per master
 * (`shardedSubscribers`); ioredis re-subscribes those itself when a master
 * fails over, and we retry what it refused. "Up" then means: every slot has
 * a master that answers a PING, and each sharded subscription sits on a live
 * subscriber (checked every second, cluster-health.ts). While one master is
 * failing over, the link is down (cross-host delivery for its slots is
 * paused, and /ready says so); other shards keep working.
 */

export type SubscriptionKind = "channel" | "shard";
export type MessageHandler = (channel: string, message: Buffer) => void;

export interface RedisLink {
  /** Publishes and runs commands; rejects at once while Redis is unreachable. */
  readonly pub: RedisClient;
  /** True while both connections are ready (cluster: every shard reachable). */
  up(): boolean;
  /** Why it is down, for /ready ("shard 10.0.0.7:6379 down", "ECONNREFUSED"). */
  downReason(): string | undefined;
  /**
   * Subscribes now if connected, and again after every reconnect. Resolves
   * once Redis has confirmed this subscription (or refused it), or at once
   * while it is not connected.
   */
  subscribe(kind: SubscriptionKind, name: string, handler: MessageHandler): Promise<void>;
  unsubscribe(kind: SubscriptionKind, name: string): void;
  /** Resolves true once up, or false after timeoutMs (start degraded). */
  whenUp(timeoutMs: number): Promise<boolean>;
  onChange(listener: (up: boolean) => void): void;
  close(): Promise<void>;
}

export interface RedisLinkDeps {
  target: RedisTarget;
  log: Logger;
  /** Shown in CLIENT LIST, e.g. "socket-server:host-a:w1". */
  name: string;
}

/** host:port and TLS/auth flags of a Redis URL, safe to log (no password). */
export function describeRedisUrl(url: string): Record<string, unknown> {
  return describeRedisTarget({ kind: "url", url });
}

export function retryDelayMs(attempt: number): number {
  const base = Math.min(5_000, 100 * 2 ** Math.max(0, attempt - 1));
  return base + Math.floor(Math.random() * 250);
}

const SUBSCRIBE_CHUNK = 500;
const HEALTH_INTERVAL_MS = 1_000;
const HEALTH_TIMEOUT_MS = 1_500;

export function createRedisLink(deps: RedisLinkDeps): RedisLink {
  const log = deps.log.child({ module: "redis" });
  const common: RedisOptions = {
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    // Subscriptions are restored by us from the wanted set (see above).
    autoResubscribe: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 5_000,
    // A Redis that stops answering without closing the connection (a
    // network partition) would let commands pile up until TCP gives up:
    // 5 s without a reply to a pending command counts as a lost connection.
    socketTimeout: 5_000,
    retryStrategy: retryDelayMs,
  };
  const cluster = deps.target.kind === "cluster";
  const pub = createRedisClient(deps.target, {
    ...common,
    // The cluster's own subscribers re-subscribe after a failover.
    ...(cluster ? { autoResubscribe: true, shardedSubscribers: true } : {}),
    connectionName: `${deps.name}:pub`,
  });
  const sub = cluster
    ? pub
    : createRedisClient(deps.target, { ...common, connectionName: `${deps.name}:sub` });

  const wanted: Record<SubscriptionKind, Map<string, MessageHandler>> = {
    channel: new Map(),
    shard: new Map(),
  };
  /** Cluster: changes ioredis has not taken yet (not connected, or refused), retried each second. */
  const retry: Record<SubscriptionKind, Set<string>> = { channel: new Set(), shard: new Set() };
  let refusals = 0;
  const failed = (kind: SubscriptionKind, names: string[]) => (err: Error) => {
    if (cluster) for (const n of names) retry[kind].add(n);
    // The connection just dropped: the next "ready" subscribes the whole
    // wanted set again. Anything else (an ACL's NOPERM) is a setup problem
    // that would silently cut this host off: say so, a few times at most.
    if (sub.status !== "ready" || refusals >= 5 || !/NOPERM|denied/i.test(err.message)) return;
    refusals += 1;
    log.error(
      { err: err.message, kind, channels: names.slice(0, 3) },
      "redis refused a subscription: messages from other hosts will not arrive (check the ACL: &<REDIS_KEY_PREFIX>:*)",
    );
  };
  /** Resolves when Redis has answered every command sent (they never reject). */
  const send = (kind: SubscriptionKind, names: string[], on: boolean): Promise<void> => {
    if (names.length === 0) return Promise.resolve();
    if (sub.status !== "ready") {
      if (cluster) for (const n of names) retry[kind].add(n);
      return Promise.resolve();
    }
    const answers: Promise<unknown>[] = [];
    for (let i = 0; i < names.length; i += SUBSCRIBE_CHUNK) {
      const chunk = names.slice(i, i + SUBSCRIBE_CHUNK);
      if (kind === "channel") {
        answers.push(
          (on ? sub.subscribe(...chunk) : sub.unsubscribe(...chunk)).catch(failed(kind, chunk)),
        );
      } else {
        // Sharded channels one by one: a cluster refuses a multi-slot SSUBSCRIBE.
        for (const c of chunk) {
          answers.push((on ? sub.ssubscribe(c) : sub.sunsubscribe(c)).catch(failed(kind, [c])));
        }
      }
    }
    return Promise.all(answers).then(() => {});
  };
  /** Cluster: hands ioredis what it has not taken yet, as the wanted set says now. */
  const retryPending = () => {
    if (sub.status !== "ready") return;
    for (const kind of ["channel", "shard"] as const) {
      const names = [...retry[kind]];
      retry[kind].clear();
      send(
        kind,
        names.filter((n) => wanted[kind].has(n)),
        true,
      );
      send(
        kind,
        names.filter((n) => !wanted[kind].has(n)),
        false,
      );
    }
  };
  sub.on("messageBuffer", (channel: Buffer, message: Buffer) => {
    const name = channel.toString();
    wanted.channel.get(name)?.(name, message);
  });
  sub.on("smessageBuffer", (channel: Buffer, message: Buffer) => {
    const name = channel.toString();
    wanted.shard.get(name)?.(name, message);
  });
  sub.on("ready", () => {
    // A cluster keeps its subscriptions across reconnects; a plain connection starts empty.
    if (cluster) return retryPending();
    for (const kind of ["channel", "shard"] as const) {
      send(kind, [...wanted[kind].keys()], true);
    }
  });

  let isUp = false;
  let everUp = false;
  let reason: string | undefined;
  let downSince = Date.now();
  let closing = false;
  /** Cluster: the last health check's verdict (undefined: healthy). */
  let clusterProblem: string | undefined = "not checked yet";
  const listeners: ((up: boolean) => void)[] = [];
  metrics.redisUp.set(0);
  const redis = describeRedisTarget(deps.target);

  const update = () => {
    const connected = pub.status === "ready" && sub.status === "ready";
    const now = connected && (!cluster || clusterProblem === undefined);
    if (now === isUp) return;
    isUp = now;
    metrics.redisUp.set(now ? 1 : 0);
    if (now) {
      if (everUp) {
        log.info(
          { downForMs: Date.now() - downSince },
          "redis reachable again: cross-host delivery resumed",
        );
      } else {
        log.info({ redis }, "redis connected");
      }
      everUp = true;
      reason = undefined;
    } else if (!closing) {
      downSince = Date.now();
      reason ??= connected ? clusterProblem : "connection lost";
      log.warn(
        { reason, redis },
        "redis unreachable: cross-host delivery and queries paused, this host keeps serving its own clients; reconnecting with backoff",
      );
    }
    for (const l of listeners) l(now);
  };
  let startupWarned = false;
  const clients: RedisClient[] = cluster ? [pub] : [pub, sub];
  for (const client of clients) {
    client.on("ready", update);
    client.on("close", update);
    client.on("end", update);
    // Our retry strategy never gives up, but ioredis may end a connection
    // on other paths (a connect aborted under it): start over, never stay cut off.
    client.on("end", () => {
      if (closing) return;
      setTimeout(() => {
        if (!closing && client.status === "end") client.connect().catch(() => {});
      }, retryDelayMs(6)).unref();
    });
    // ioredis emits an error per failed attempt: remember the reason, log
    // only state changes (above) and the first failure at start (below).
    client.on("error", (err: Error & { code?: string }) => {
      reason = err.code ?? err.message.slice(0, 200);
      if (!everUp && !startupWarned && !closing) {
        startupWarned = true;
        log.warn(
          { reason, redis },
          "redis unreachable at start: running degraded (this host only, /ready 503) and retrying with backoff",
        );
      }
    });
  }
  // Cluster nodes report their errors as "node error" (one failing shard).
  if (cluster) {
    pub.on("node error", (err: Error & { code?: string }) => {
      if (!isUp) reason = err.code ?? err.message.slice(0, 200);
    });
  }

  let checking = false;
  const healthTimer = cluster
    ? setInterval(() => {
        if (checking || closing) return;
        checking = true;
        retryPending();
        clusterHealth(pub as Cluster, HEALTH_TIMEOUT_MS)
          .then((problem) => {
            clusterProblem = problem;
            if (problem !== undefined) reason = problem;
            update();
          })
          .finally(() => {
            checking = false;
          });
      }, HEALTH_INTERVAL_MS)
    : undefined;
  healthTimer?.unref();

  return {
    pub,
    up: () => isUp,
    downReason: () => (isUp ? undefined : reason),
    subscribe(kind, name, handler) {
      const had = wanted[kind].has(name);
      wanted[kind].set(name, handler);
      return had ? Promise.resolve() : send(kind, [name], true);
    },
    unsubscribe(kind, name) {
      if (wanted[kind].delete(name)) void send(kind, [name], false);
    },
    whenUp(timeoutMs) {
      if (isUp) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        listeners.push((up) => {
          if (!up) return;
          clearTimeout(timer);
          resolve(true);
        });
      });
    },
    onChange(listener) {
      listeners.push(listener);
    },
    async close() {
      closing = true;
      if (healthTimer) clearInterval(healthTimer);
      await Promise.allSettled(clients.map((c) => c.quit()));
      for (const c of clients) c.disconnect();
    },
  };
}
