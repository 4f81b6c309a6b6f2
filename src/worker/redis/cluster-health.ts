import type { Cluster, Redis } from "ioredis";

/**
 * Whether a Redis Cluster can carry this worker's cross-host traffic now:
 * every slot has a master, every master answers a PING within the timeout,
 * and every channel this worker has SSUBSCRIBEd (and its classic SUBSCRIBEs)
 * sits on a live subscriber connection. Undefined when healthy, else why not
 * ("shard 10.0.0.7:6379 unreachable"), for the log and /ready.
 *
 * ioredis follows a failover by itself (a refreshed slot table, new
 * subscribers, re-subscription); this tells when it has finished. The
 * subscriber state is read from ioredis' internals (ClusterSubscriberGroup,
 * ClusterSubscriber, ioredis 6): when their shape is not what we expect the
 * check is skipped, never failed.
 */

const SLOTS = 16_384;

interface ShardedGroup {
  shardedSubscribers: Map<string, { subscriberStatus: string; getInstance(): Redis | null }>;
  channels: Map<number, string[]>;
  clusterSlots: string[][];
}
interface Internals {
  shardedSubscribers?: Partial<ShardedGroup>;
  subscriber?: { getInstance?: () => Redis | null };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timeout")), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

const keyOf = (n: Redis) => `${n.options.host}:${n.options.port}`;

/** ioredis' sharded subscriber group, when it has the shape this module reads. */
export function shardedGroup(cluster: Cluster): ShardedGroup | undefined {
  const group = (cluster as unknown as Internals).shardedSubscribers;
  if (
    !group ||
    !(group.shardedSubscribers instanceof Map) ||
    !(group.channels instanceof Map) ||
    !Array.isArray(group.clusterSlots)
  ) {
    return undefined;
  }
  return group as ShardedGroup;
}

/** ioredis' classic subscriber (one connection for the whole cluster), when readable. */
export function classicSubscriber(cluster: Cluster): { getInstance(): Redis | null } | undefined {
  const sub = (cluster as unknown as Internals).subscriber;
  return typeof sub?.getInstance === "function"
    ? (sub as { getInstance(): Redis | null })
    : undefined;
}

/** The sharded subscriptions' problem, if any (undefined also when internals are unknown). */
export function shardedSubscribersProblem(cluster: Cluster): string | undefined {
  const group = shardedGroup(cluster);
  if (!group) return undefined;
  const dead = new Set<string>();
  for (const [slot, channels] of group.channels) {
    if (channels.length === 0) continue;
    const node = group.clusterSlots[slot]?.[0];
    const sub = node === undefined ? undefined : group.shardedSubscribers.get(node);
    if (sub?.subscriberStatus !== "connected" || sub.getInstance()?.status !== "ready") {
      dead.add(node ?? `slot ${slot}`);
    }
  }
  return dead.size > 0
    ? `sharded subscriber for ${[...dead].sort().join(",")} not connected`
    : undefined;
}

export async function clusterHealth(
  cluster: Cluster,
  timeoutMs: number,
): Promise<string | undefined> {
  if (cluster.status !== "ready") return `cluster connection ${cluster.status}`;
  const masters = new Map(cluster.nodes("master").map((n) => [keyOf(n), n]));
  const owners = new Set<string>();
  let uncovered = 0;
  for (let slot = 0; slot < SLOTS; slot++) {
    const owner = cluster.slots[slot]?.[0];
    if (owner === undefined) uncovered++;
    else owners.add(owner);
  }
  if (uncovered > 0) return `${uncovered} slots without a master`;
  const down = (
    await Promise.all(
      [...owners].map(async (key) => {
        const node = masters.get(key);
        if (!node) return key;
        try {
          await withTimeout(node.ping(), timeoutMs);
          return undefined;
        } catch {
          return key;
        }
      }),
    )
  ).filter((k): k is string => k !== undefined);
  if (down.length > 0) return `shard ${down.sort().join(",")} unreachable`;
  const sharded = shardedSubscribersProblem(cluster);
  if (sharded) return sharded;
  const classic = classicSubscriber(cluster);
  if (classic && classic.getInstance()?.status !== "ready") return "subscriber not connected";
  return undefined;
}
