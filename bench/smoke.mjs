import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * `npm run bench:smoke`: every bench with tiny settings (a few dozen clients,
 * one-second runs, one round), so that CI notices when the bench code rots.
 * It checks that each bench exits 0 and prints its markdown table; it says
 * nothing about performance. Results go to a temporary directory.
 */
// The benches speak one protocol to every target, and the self-check starts
// and checks all four, so each other bench runs against socket-server and one
// baseline (each baseline in some bench): half the processes of every target
// everywhere, the same bench code run. For the same reason the others run one
// worker per cluster: the self-check runs socket-server and the docs cluster
// with two.
const ONE_WORKER = { BENCH_WORKERS: "1" };
const TINY = {
  // Both WebSocket layers against four targets took 26 s alone and over the
  // 60 s limit beside the other test files; the raw layer is the default one.
  "self-check": { SELF_CHECK_CLIENTS: "raw" },
  "auth-cost": { AUTH_TOKENS: "50", AUTH_CONCURRENCY: "1,8" },
  memory: {
    ...ONE_WORKER,
    BENCH_TARGETS: "socket-server,bare-ws",
    MEMORY_STEPS: "10,30",
    MEMORY_SETTLE_MS: "200",
    MEMORY_CONCURRENCY: "10",
  },
  connect: {
    ...ONE_WORKER,
    BENCH_TARGETS: "socket-server,docs-cluster",
    // One socket-server run per bench: its variants run the same bench code.
    CONNECT_AUTH_MODES: "inline",
    CONNECT_CLIENTS: "30",
    CONNECT_CONCURRENCY: "10",
    CONNECT_TIMEOUT_MS: "10000",
  },
  fanout: {
    ...ONE_WORKER,
    BENCH_TARGETS: "socket-server,single",
    FANOUT_SOCKET_SERVER_LAG_MS: "none",
    FANOUT_CLIENTS: "30",
    FANOUT_RATES: "5",
    FANOUT_DURATION_S: "1",
    FANOUT_SETTLE_MS: "2000",
    FANOUT_CONCURRENCY: "10",
  },
  push: {
    ...ONE_WORKER,
    BENCH_TARGETS: "socket-server,single",
    PUSH_USERS: "30",
    PUSH_CONNECTIONS: "2",
    PUSH_DURATION_S: "1",
    // The warm-up is the measured run's code; the load is paced, not flat out.
    PUSH_WARMUP_S: "0",
    PUSH_RATE: "100",
    PUSH_SETTLE_MS: "1000",
    PUSH_BATCH_SIZE: "5",
    PUSH_ROOMS: "3",
  },
};

const resultsDir = mkdtempSync(join(tmpdir(), "ss-bench-smoke-"));
const only = process.env.BENCH_ONLY?.split(",")
  .map((s) => s.trim())
  .filter(Boolean);
const quiet = process.env.BENCH_SMOKE_QUIET === "1";
// A bench that hangs is stopped (SIGTERM: it stops its targets) after this
// long and reported with the end of its output, instead of eating the test's
// whole time limit silently. The tiny runs take 1–20 s each alone; beside
// the other test files in CI, the self-check took 32 s in one run and over
// 60 s in another (the test allows 170 s for all of them, 3 at a time).
const limitMs = Number(process.env.BENCH_SMOKE_LIMIT_S ?? 90) * 1000;

function run(name, env) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL(`./${name}.mjs`, import.meta.url))],
      {
        env: { ...process.env, BENCH_ROUNDS: "1", BENCH_RESULTS_DIR: resultsDir, ...env },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    child.stdout.on("data", (c) => {
      out += c;
      if (!quiet) process.stdout.write(c);
    });
    child.stderr.on("data", (c) => {
      out += c;
      if (!quiet) process.stderr.write(c);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGTERM");
      setTimeout(() => child.kill("SIGKILL"), 10_000).unref();
    }, limitMs);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      const table = /^\|[-:|]+\|$/m.test(out);
      const seconds = Math.round((Date.now() - started) / 1000);
      const exit = timedOut ? `stopped after ${limitMs / 1000} s` : `exit ${code ?? signal}`;
      // Quiet (the test runner): only a failing bench's output is shown, and
      // one line per bench as it ends, so a stuck run shows where it stuck.
      if (quiet && (code !== 0 || !table)) process.stdout.write(out.slice(-6000));
      if (quiet) process.stdout.write(`bench smoke: ${name} ${exit}, ${seconds} s\n`);
      resolve({ name, code: timedOut ? null : code, exit, table, seconds });
    });
  });
}

// BENCH_SMOKE_PARALLEL benches at a time (the test runs 3: the tiny runs
// mostly wait for their targets to start).
const parallel = Math.max(1, Number(process.env.BENCH_SMOKE_PARALLEL ?? 1));
// The longest first (push, self-check, memory: 12-14 s each alone), so that
// no long one starts last.
const FIRST = ["push", "self-check", "memory"];
const todo = Object.entries(TINY)
  .filter(([name]) => !only?.length || only.includes(name))
  .sort(([a], [b]) => (FIRST.includes(b) ? 1 : 0) - (FIRST.includes(a) ? 1 : 0));
const results = [];
await Promise.all(
  Array.from({ length: Math.min(parallel, todo.length) }, async () => {
    for (let next = todo.shift(); next; next = todo.shift()) {
      results.push(await run(next[0], next[1]));
    }
  }),
);
results.sort((a, b) => Object.keys(TINY).indexOf(a.name) - Object.keys(TINY).indexOf(b.name));
rmSync(resultsDir, { recursive: true, force: true });

process.stdout.write("\nbench smoke:\n");
for (const r of results) {
  process.stdout.write(
    `  ${r.code === 0 && r.table ? "ok  " : "FAIL"} ${r.name} (${r.exit}, table ${r.table ? "printed" : "missing"}, ${r.seconds} s)\n`,
  );
}
if (results.some((r) => r.code !== 0 || !r.table)) process.exit(1);
