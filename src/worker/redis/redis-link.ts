import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { metrics } from "../../shared/metrics.js";

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
 */

export type SubscriptionKind = "channel" | "shard";
export type MessageHandler = (channel: string, message: Buffer) => void;

export interface RedisLink {
  /** Publishes and runs commands; rejects at once while Redis is unreachable. */
  readonly pub: Redis;
  /** True while both connections are ready. */
  up(): boolean;
  /** Subscribes now if connected, and again after every reconnect. */
  subscribe(kind: SubscriptionKind, name: string, handler: MessageHandler): void;
  unsubscribe(kind: SubscriptionKind, name: string): void;
  /** Resolves true once up, or false after timeoutMs (start degraded). */
  whenUp(timeoutMs: number): Promise<boolean>;
  onChange(listener: (up: boolean) => void): void;
  close(): Promise<void>;
}

export interface RedisLinkDeps {
  url: string;
  log: Logger;
  /** Shown in CLIENT LIST, e.g. "socket-server:host-a:w1". */
  name: string;
}

/** host:port and TLS/auth flags of a Redis URL, safe to log (no password). */
export function describeRedisUrl(url: string): Record<string, unknown> {
  try {
    const u = new URL(url);
    return {
      host: u.hostname,
      port: u.port || "6379",
      tls: u.protocol === "rediss:",
      auth: u.password !== "" || u.username !== "",
      db: u.pathname.length > 1 ? u.pathname.slice(1) : "0",
    };
  } catch {
    return { url: "(unparseable)" };
  }
}

export function retryDelayMs(attempt: number): number {
  const base = Math.min(5_000, 100 * 2 ** Math.max(0, attempt - 1));
  return base + Math.floor(Math.random() * 250);
}

const SUBSCRIBE_CHUNK = 500;

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
  const pub = new Redis(deps.url, { ...common, connectionName: `${deps.name}:pub` });
  const sub = new Redis(deps.url, { ...common, connectionName: `${deps.name}:sub` });

  const wanted: Record<SubscriptionKind, Map<string, MessageHandler>> = {
    channel: new Map(),
    shard: new Map(),
  };
  let refusals = 0;
  const failed = (kind: SubscriptionKind, names: string[]) => (err: Error) => {
    // The connection just dropped: the next "ready" subscribes the whole
    // wanted set again. Anything else (an ACL's NOPERM) is a setup problem
    // that would silently cut this host off: say so, a few times at most.
    if (sub.status !== "ready" || refusals >= 5) return;
    refusals += 1;
    log.error(
      { err: err.message, kind, channels: names.slice(0, 3) },
      "redis refused a subscription: messages from other hosts will not arrive (check the ACL: &<REDIS_KEY_PREFIX>:*)",
    );
  };
  const send = (kind: SubscriptionKind, names: string[], on: boolean): void => {
    if (sub.status !== "ready" || names.length === 0) return;
    for (let i = 0; i < names.length; i += SUBSCRIBE_CHUNK) {
      const chunk = names.slice(i, i + SUBSCRIBE_CHUNK);
      if (kind === "channel") {
        void (on ? sub.subscribe(...chunk) : sub.unsubscribe(...chunk)).catch(failed(kind, chunk));
      } else {
        // Sharded channels one by one: a cluster refuses a multi-slot SSUBSCRIBE.
        for (const c of chunk) {
          void (on ? sub.ssubscribe(c) : sub.sunsubscribe(c)).catch(failed(kind, [c]));
        }
      }
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
    for (const kind of ["channel", "shard"] as const) {
      send(kind, [...wanted[kind].keys()], true);
    }
  });

  let isUp = false;
  let everUp = false;
  let reason: string | undefined;
  let downSince = Date.now();
  let closing = false;
  const listeners: ((up: boolean) => void)[] = [];
  metrics.redisUp.set(0);

  const update = () => {
    const now = pub.status === "ready" && sub.status === "ready";
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
        log.info({ redis: describeRedisUrl(deps.url) }, "redis connected");
      }
      everUp = true;
      reason = undefined;
    } else if (!closing) {
      downSince = Date.now();
      reason ??= "connection lost";
      log.warn(
        { reason, redis: describeRedisUrl(deps.url) },
        "redis unreachable: cross-host delivery and queries paused, this host keeps serving its own clients; reconnecting with backoff",
      );
    }
    for (const l of listeners) l(now);
  };
  let startupWarned = false;
  for (const client of [pub, sub]) {
    client.on("ready", update);
    client.on("close", update);
    client.on("end", update);
    // ioredis emits an error per failed attempt: remember the reason, log
    // only state changes (above) and the first failure at start (below).
    client.on("error", (err: Error & { code?: string }) => {
      reason = err.code ?? err.message.slice(0, 200);
      if (!everUp && !startupWarned && !closing) {
        startupWarned = true;
        log.warn(
          { reason, redis: describeRedisUrl(deps.url) },
          "redis unreachable at start: running degraded (this host only, /ready 503) and retrying with backoff",
        );
      }
    });
  }

  return {
    pub,
    up: () => isUp,
    subscribe(kind, name, handler) {
      const had = wanted[kind].has(name);
      wanted[kind].set(name, handler);
      if (!had) send(kind, [name], true);
    },
    unsubscribe(kind, name) {
      if (wanted[kind].delete(name)) send(kind, [name], false);
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
      await Promise.allSettled([pub.quit(), sub.quit()]);
      pub.disconnect();
      sub.disconnect();
    },
  };
}
