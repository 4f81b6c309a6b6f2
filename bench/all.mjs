import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/**
 * `npm run bench`: every bench in turn, each in its own process (so one
 * bench's memory does not weigh on the next), with the environment passed
 * through (every knob works here too). BENCH_ONLY=memory,push runs a subset.
 */
const ALL = ["self-check", "auth-cost", "memory", "connect", "fanout", "push"];
const only = process.env.BENCH_ONLY?.split(",")
  .map((s) => s.trim())
  .filter(Boolean);
const benches = only?.length ? ALL.filter((b) => only.includes(b)) : ALL;

const failed = [];
for (const b of benches) {
  const started = Date.now();
  const r = spawnSync(process.execPath, [fileURLToPath(new URL(`./${b}.mjs`, import.meta.url))], {
    stdio: "inherit",
    env: process.env,
  });
  process.stdout.write(
    `\n[${b}: exit ${r.status ?? r.signal} after ${Math.round((Date.now() - started) / 1000)} s]\n\n`,
  );
  if (r.status !== 0) failed.push(b);
}
if (failed.length) {
  process.stderr.write(`bench: failed: ${failed.join(", ")}\n`);
  process.exit(1);
}
