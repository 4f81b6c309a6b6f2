import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { track, waitExit } from "./support/processes.js";

// The benches are programs (bench/), not tests: this only checks that they
// still run end to end with tiny settings (`npm run bench:smoke`: a few dozen
// clients, one-second runs, every target) and print their tables, so that the
// bench code cannot rot. No figure is asserted.

const SMOKE = fileURLToPath(new URL("../bench/smoke.mjs", import.meta.url));

describe("bench smoke", () => {
  it("every bench runs with tiny settings and prints its table", async () => {
    const child = spawn(process.execPath, [SMOKE], {
      env: { ...process.env, BENCH_SMOKE_QUIET: "1", BENCH_SMOKE_PARALLEL: "3" },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    track(child);
    let out = "";
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
    const code = await waitExit(child, 170_000);
    expect(code, out.slice(-4000)).toBe(0);
    for (const bench of ["self-check", "auth-cost", "memory", "connect", "fanout", "push"]) {
      expect(out).toMatch(new RegExp(`ok\\s+${bench} \\(exit 0, table printed`));
    }
  }, 180_000);
});
