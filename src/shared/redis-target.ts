/**
 * Where Redis is, from the configuration: one server (`REDIS_URL`), a Redis
 * Cluster (`REDIS_CLUSTER_NODES`) or a Sentinel-managed master
 * (`REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`). Every Redis client of a
 * worker is made from it (src/worker/redis/redis-clients.ts).
 */

export interface HostPort {
  host: string;
  port: number;
}

/** REDIS_USERNAME, REDIS_PASSWORD, REDIS_TLS (a REDIS_URL carries its own). */
export interface RedisAuth {
  username?: string;
  password?: string;
  tls: boolean;
}

export type RedisTarget =
  | { kind: "url"; url: string }
  | { kind: "cluster"; nodes: HostPort[]; auth: RedisAuth }
  | { kind: "sentinel"; sentinels: HostPort[]; master: string; auth: RedisAuth };

/** "host:port" or "[v6]:port", already validated by the schema. */
export function parseHostPort(s: string): HostPort {
  const i = s.lastIndexOf(":");
  const host = s.slice(0, i).replace(/^\[(.*)\]$/, "$1");
  return { host, port: Number(s.slice(i + 1)) };
}

/** What a log line may say about the target: addresses and flags, never a password. */
export function describeRedisTarget(t: RedisTarget): Record<string, unknown> {
  if (t.kind === "url") {
    try {
      const u = new URL(t.url);
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
  const list = (nodes: HostPort[]) => nodes.map((n) => `${n.host}:${n.port}`).join(",");
  const auth = t.auth.password !== undefined || t.auth.username !== undefined;
  return t.kind === "cluster"
    ? { cluster: list(t.nodes), tls: t.auth.tls, auth }
    : { sentinels: list(t.sentinels), master: t.master, tls: t.auth.tls, auth };
}
