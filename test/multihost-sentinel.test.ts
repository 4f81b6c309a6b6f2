import { defineHaSuite } from "./multihost-ha-suite.js";
import { startRedisSentinel } from "./support/redis-ha.js";

// One master, one replica, three sentinels (down-after-milliseconds 1 s).
defineHaSuite("sentinel", async () => {
  const s = await startRedisSentinel({ downAfterMs: 1_000 });
  return {
    env: { REDIS_SENTINELS: s.sentinels, REDIS_SENTINEL_MASTER: s.master },
    masterOf: () => s.masterPort(),
    switchover: () => s.switchover(),
    kill: (port) => s.kill(port),
    stop: () => s.stop(),
  };
});
