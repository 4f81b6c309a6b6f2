import { defineConfig } from "vitest/config";
import { longFirst } from "./test/support/sequencer.js";

// Most files spend their time waiting on the processes they fork (servers,
// redis-servers, Chromium), so they run in parallel. The files whose
// assertions measure time or load (restart and crash timings, hang detection,
// rate limits and load shedding, a 5,000-client burst) run afterwards, one at
// a time, on an otherwise quiet machine, as every file used to. Not in it:
// lifecycle-tokens (its one timing bound, an expiry within 1.5 s of its due
// time, holds in parallel), hostile (its exact answers became 503 when
// servers shed load at a lag p99 over 500 ms; test servers now allow 5 s),
// replay-crash (its failures under load were a Redis take timing out, now
// given 10 s, and a test client that missed the open packet), and the Redis
// Cluster and Sentinel failovers (Redis elects a new master on its own
// timers, 2.6–5 s against a 15 s bound; their one query waits 5 s).
const SERIAL = [
  "test/cluster.test.ts",
  "test/lifecycle.test.ts",
  "test/lifecycle-crash.test.ts",
  "test/hung-worker.test.ts",
  "test/protection.test.ts",
];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    reporters: ["default"],
    // The longest files start first (a fresh checkout has no timing cache).
    sequence: {
      sequencer: longFirst([
        "test/bench-smoke.test.ts",
        "test/multihost-sentinel.test.ts",
        "test/replay-crash.test.ts",
        "test/multihost-cluster.test.ts",
      ]),
    },
    projects: [
      {
        extends: true,
        test: {
          name: "parallel",
          // Files share their test processes: each of the 3 loads the server's
          // modules once, not once per file (import time 54 s → 15 s, the
          // suite's CPU −22%). Every file cleans up what it starts, and the
          // one-process servers keep their state in the instance.
          isolate: false,
          include: ["test/**/*.test.ts"],
          exclude: SERIAL,
          maxWorkers: 3,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: "serial",
          include: SERIAL,
          maxWorkers: 1,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
