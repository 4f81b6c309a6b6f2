import { mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { openFleet } from "./lib/fleet.mjs";
import { settings } from "./lib/knobs.mjs";
import { checkOpenFiles } from "./lib/limits.mjs";
import { ROOT } from "./lib/machine.mjs";
import { rssKb } from "./lib/proc.mjs";
import { runBench } from "./lib/run.mjs";
import { sleep } from "./lib/stats.mjs";
import { startTarget } from "./lib/targets.mjs";
import { benchApiKey, benchTokens } from "./lib/tokens.mjs";
import { formatDiff, heapDiff, heapStats } from "./heap-diff.mjs";

/**
 * Where idle connections' memory goes: for each target, the process that
 * serves the sockets (socket-server with one worker: the worker) writes a
 * heap snapshot with no client, then with HEAP_CLIENTS registered idle
 * clients; bench/heap-diff.mjs turns the two into bytes per connection by
 * object type. RSS is read beside each snapshot: what RSS grows by beyond
 * the heap is off-heap (buffers, native handles, allocator).
 *
 * A diagnosis, not a comparison bench: one round, snapshots kept in
 * HEAP_DIR for DevTools.
 */
const SPEC = {
  HEAP_TARGETS: [["socket-server", "single"], "targets"],
  HEAP_CLIENTS: [1000, "registered idle clients in the second snapshot"],
  HEAP_SETTLE_MS: [3000, "quiet time before each snapshot"],
  HEAP_DIR: [join(ROOT, ".tmp", "heap"), "where the snapshots are written"],
  HEAP_ROWS: [25, "rows of the table"],
};

async function snapshot(pid, dir) {
  const before = new Set(readdirSync(dir));
  process.kill(pid, "SIGUSR2");
  let file;
  let size = -1;
  for (let stable = 0; stable < 4; ) {
    await sleep(250);
    file ??= readdirSync(dir).find((f) => !before.has(f) && f.includes(`.${pid}.`));
    if (!file) continue;
    const s = statSync(join(dir, file)).size;
    stable = s === size && s > 0 ? stable + 1 : 0;
    size = s;
  }
  return join(dir, file);
}

async function main() {
  const o = settings("bench: heap snapshot diff of idle connections", SPEC);
  checkOpenFiles(o.HEAP_CLIENTS);
  mkdirSync(o.HEAP_DIR, { recursive: true });
  const { keys, tokens } = await benchTokens("ES256", o.HEAP_CLIENTS);
  process.env.BENCH_TARGET_NODE_ARGS = `${process.env.BENCH_TARGET_NODE_ARGS ?? ""} --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${o.HEAP_DIR}`;
  for (const name of o.HEAP_TARGETS) {
    const target = await startTarget(name, { keys, apiKey: benchApiKey(), workers: 1 });
    const clients = [];
    try {
      const pids = target.pids();
      // socket-server: the one worker; a baseline: its only process.
      const pid = pids.length > 1 ? pids[1] : pids[0];
      await sleep(o.HEAP_SETTLE_MS);
      const a = await snapshot(pid, o.HEAP_DIR);
      const rssA = rssKb(pid);
      const fleet = await openFleet(target, tokens, { retries: 3 });
      clients.push(...fleet.clients);
      if (fleet.completed !== o.HEAP_CLIENTS) throw new Error(`${name}: ${fleet.failed} failed`);
      await sleep(o.HEAP_SETTLE_MS);
      const b = await snapshot(pid, o.HEAP_DIR);
      const rssB = rssKb(pid);
      const diff = heapDiff(heapStats(a), heapStats(b), o.HEAP_CLIENTS);
      process.stdout.write(
        `\n## ${name} (pid ${pid}): heap +${(diff.totalBytes / 1024).toFixed(1)} KB per connection, ` +
          `RSS of that process +${((rssB - rssA) / o.HEAP_CLIENTS).toFixed(1)} KB per connection\n` +
          `${a}\n${b}\n\n${formatDiff(diff, o.HEAP_ROWS)}\n`,
      );
    } finally {
      for (const c of clients) c.terminate();
      await target.stop();
    }
  }
}

await runBench(main);
