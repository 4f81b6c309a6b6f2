import { defineHaSuite } from "./multihost-ha-suite.js";
import { startRedisCluster } from "./support/redis-ha.js";

// A Redis Cluster of 3 masters and 3 replicas (cluster-node-timeout 1 s), sharded pub/sub.
defineHaSuite("cluster", async () => {
  const c = await startRedisCluster({ masters: 3, nodeTimeoutMs: 1_000 });
  return {
    env: { REDIS_CLUSTER_NODES: c.seeds },
    masterOf: (key) => c.masterOf(key),
    switchover: (key) => c.switchover(key),
    kill: (port) => c.kill(port),
    moveSlotOf: (key) => c.moveSlotOf(key),
    stop: () => c.stop(),
  };
});
