import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Cluster tests fork real processes; on a 2-core machine running files in
    // parallel makes their timings meaningless, so files run one at a time.
    fileParallelism: false,
    pool: "forks",
    reporters: ["default"],
  },
});
