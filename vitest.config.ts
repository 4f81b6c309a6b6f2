import { defineConfig } from "vitest/config";
import { longFirst } from "./test/support/sequencer.js";

// Most files spend their time waiting on the processes they fork (servers,
// redis-servers, Chromium), so they run in parallel, their timing bounds
// made to hold under that load (each crash, hang and restart file passed
// three times in a row beside three busy loops on this 2-core machine).
// protection.test.ts alone runs afterwards on an otherwise quiet machine:
// load shedding at an event-loop lag p99 of 300 ms is what it tests, and the
// other files' load would shed for them.
const SERIAL = ["test/protection.test.ts"];

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
        "test/cluster.test.ts",
        "test/multihost-cluster.test.ts",
      ]),
    },
    projects: [
      {
        extends: true,
        test: {
          name: "parallel",
          // Four files at a time: most of a file's time is waiting on the
          // processes it forks, so a fourth fits on 2 cores (full run
          // 127.4 → 111.5 and 114.7 s, CPU 203 → 192 and 200 s).
          // Files share their test processes: each of the 4 loads the server's
          // modules once, not once per file (import time 54 s → 15 s, the
          // suite's CPU −22%). Every file cleans up what it starts, and the
          // one-process servers keep their state in the instance.
          isolate: false,
          include: ["test/**/*.test.ts"],
          exclude: SERIAL,
          maxWorkers: 4,
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
