import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { closeFleet } from "./fleet.mjs";
import { ROOT } from "./machine.mjs";
import { cpuMeter, processTree, treeRss } from "./proc.mjs";
import { sleep } from "./stats.mjs";
import { benchApiKey } from "./tokens.mjs";

/**
 * The servers under test, each started as its own process tree on free
 * loopback ports, loaded only after it answers `/ready`, and always stopped
 * (SIGTERM, then SIGKILL of its process group) — also when the bench dies.
 *
 * - socket-server: `node dist/main.js` (run `npm run build` first);
 * - single: bench/baselines/single.mjs, one plain Socket.IO process;
 * - docs-cluster: bench/baselines/docs-cluster.mjs, the Socket.IO docs recipe;
 * - bare-ws: bench/baselines/bare-ws.mjs, the `ws` library alone speaking just
 *   enough of the wire format: the floor, not an alternative.
 */

const PROBE = pathToFileURL(join(ROOT, "bench", "lib", "lag-probe.mjs")).href;

/**
 * socket-server runs with its default per-address limits: the load
 * generator spreads its clients over many loopback addresses
 * (bench/lib/source-addresses.mjs), as real clients come from many. Only the
 * per-API-key push rate is raised: the bench's backend is one key, and
 * measuring how fast pushes go is the point.
 */
export const SOCKET_SERVER_BENCH_ENV = {
  NODE_ENV: "production",
  CORS_ORIGINS: "http://localhost",
  LOG_LEVEL: "warn",
  RATE_PUSHES_PER_KEY_PER_SECOND: "100000000",
};

export const TARGETS = {
  "socket-server": {
    // BENCH_SOCKET_SERVER_MAIN: another build of socket-server, to compare two.
    script: process.env.BENCH_SOCKET_SERVER_MAIN || join(ROOT, "dist", "main.js"),
    // BENCH_SOCKET_SERVER_NODE_ARGS="--flag ...": node flags for socket-server
    // only (its workers inherit them), e.g. a V8 GC flag against the baselines.
    nodeArgs: (process.env.BENCH_SOCKET_SERVER_NODE_ARGS ?? "").split(" ").filter(Boolean),
    /** Which processes' event loops serve the sockets. */
    serverRole: "worker",
    env: (o) => ({
      ...SOCKET_SERVER_BENCH_ENV,
      WORKERS: String(o.workers),
      // BENCH_SOCKET_SERVER_ENV="K=V,K2=V2": settings for socket-server only, to compare two.
      ...Object.fromEntries(
        (process.env.BENCH_SOCKET_SERVER_ENV ?? "")
          .split(",")
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
      ),
    }),
  },
  single: {
    script: join(ROOT, "bench", "baselines", "single.mjs"),
    serverRole: "primary",
    env: () => ({}),
  },
  "docs-cluster": {
    script: join(ROOT, "bench", "baselines", "docs-cluster.mjs"),
    serverRole: "worker",
    env: (o) => ({ WORKERS: String(o.workers) }),
  },
  "bare-ws": {
    script: join(ROOT, "bench", "baselines", "bare-ws.mjs"),
    serverRole: "primary",
    env: () => ({}),
  },
};

const running = new Set();
const killAll = () => {
  for (const t of running) {
    try {
      process.kill(-t.pid, "SIGKILL");
    } catch {}
  }
};
process.once("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, () => {
    killAll();
    process.exit(130);
  });
}

/**
 * @param {string} name a key of TARGETS
 * @param {{ keys: { serverEnv: object }, apiKey: string, workers: number,
 *   probePort?: number, env?: Record<string, string> }} o
 */
export async function startTarget(name, o) {
  const def = TARGETS[name];
  if (!def) throw new Error(`unknown target ${name} (known: ${Object.keys(TARGETS).join(", ")})`);
  if (!existsSync(def.script)) {
    throw new Error(`${def.script} is missing${name === "socket-server" ? ": npm run build" : ""}`);
  }
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PORT: "0",
    API_PORT: "0",
    HOST: "127.0.0.1",
    API_KEYS: o.apiKey,
    DASHBOARD_TOKEN: "bench-dashboard-token-not-secret",
    ...o.keys.serverEnv,
    ...def.env(o),
    ...(o.probePort
      ? { BENCH_PROBE_PORT: String(o.probePort), NODE_OPTIONS: `--import=${PROBE}` }
      : {}),
    // Diagnosis switches of the probe (BENCH_PROBE_GC, BENCH_PROBE_IPC).
    ...Object.fromEntries(
      Object.entries(process.env).filter(([k]) => k.startsWith("BENCH_PROBE_")),
    ),
    ...o.env,
  };
  const started = performance.now();
  // e.g. BENCH_TARGET_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile
  // a target under load (cluster workers inherit the primary's node flags).
  const nodeArgs = (process.env.BENCH_TARGET_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const proc = spawn(process.execPath, [...nodeArgs, ...(def.nodeArgs ?? []), def.script], {
    env,
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const t = { name, pid: proc.pid, proc, serverRole: def.serverRole };
  running.add(t);
  let out = "";
  const keep = (chunk) => {
    out += chunk.toString();
    if (out.length > 64_000) out = out.slice(-32_000);
  };
  proc.stdout.on("data", keep);
  proc.stderr.on("data", keep);
  const exited = new Promise((resolve) => proc.once("exit", (code, sig) => resolve(code ?? sig)));

  let startTimer;
  const ports = await Promise.race([
    (async () => {
      while (proc.exitCode === null && proc.signalCode === null) {
        const m = /\{"msg":"ports","publicPort":(\d+),"apiPort":(\d+)\}/.exec(out);
        if (m) return { publicPort: Number(m[1]), apiPort: Number(m[2]) };
        await sleep(20);
      }
      return new Promise(() => {}); // the exit below reports it
    })(),
    exited.then((code) => {
      throw new Error(`${name} exited (${code}) before listening:\n${out.slice(-3000)}`);
    }),
    new Promise((_, reject) => {
      startTimer = setTimeout(
        () => reject(new Error(`${name} did not listen within 60 s:\n${out.slice(-3000)}`)),
        60_000,
      );
    }),
  ])
    .catch(async (err) => {
      await stop();
      throw err;
    })
    .finally(() => clearTimeout(startTimer));

  const publicUrl = `http://127.0.0.1:${ports.publicPort}`;
  const apiUrl = `http://127.0.0.1:${ports.apiPort}`;
  for (const readyBy = performance.now() + 30_000; ; ) {
    // Each probe has its own time limit: a request the target accepts and
    // never answers (the docs recipe's sticky layer loses some) is retried.
    const res = await fetch(`${apiUrl}/ready`, { signal: AbortSignal.timeout(2_000) }).catch(
      () => undefined,
    );
    if (res?.status === 200) break;
    if (performance.now() > readyBy) {
      await stop();
      throw new Error(`${name} not ready after 30 s:\n${out.slice(-3000)}`);
    }
    await sleep(50);
  }

  async function stop() {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      let timer;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 15_000)))]);
      clearTimeout(timer);
    }
    // Whatever is left of the group (a worker that outlived its primary).
    try {
      process.kill(-proc.pid, "SIGKILL");
    } catch {}
    running.delete(t);
  }

  return Object.assign(t, {
    publicUrl,
    apiUrl,
    apiKey: o.apiKey,
    startMs: performance.now() - started,
    output: () => out,
    pids: () => processTree(proc.pid),
    rss: () => treeRss(proc.pid),
    cpu: () => cpuMeter(proc.pid),
    alive: () => proc.exitCode === null && proc.signalCode === null,
    stop,
  });
}

/**
 * BENCH_TARGETS for eachTargetRound with socket-server once per variant
 * (`{ label, env }`, label "socket-server (…)"), each its own column of the
 * round; the other targets once, labelled by name.
 */
export function withVariants(targets, variants) {
  return targets.flatMap((t) =>
    t === "socket-server" ? variants.map((v) => ({ target: t, ...v })) : [{ target: t, label: t }],
  );
}

/** Round r runs the targets rotated by r, so no target always goes first. */
export function roundOrder(targets, round) {
  const n = targets.length;
  return targets.map((_, i) => targets[(i + round) % n]);
}

/**
 * The interleaved schedule of the comparison benches: BENCH_ROUNDS rounds,
 * each starting every target (a name, or `{ target, env }`: one variant of
 * it) in roundOrder with a fresh API key, running `run(target, round, item,
 * clients)` on it, then closing the clients pushed into `clients` and
 * stopping the target, also when `run` throws.
 */
export async function eachTargetRound(o, { keys, probePort, targets = o.BENCH_TARGETS }, run) {
  for (let round = 0; round < o.BENCH_ROUNDS; round++) {
    for (const item of roundOrder(targets, round)) {
      const target = await startTarget(item.target ?? item, {
        keys,
        apiKey: benchApiKey(),
        workers: o.BENCH_WORKERS,
        probePort,
        env: item.env,
      });
      const clients = [];
      try {
        await run(target, round, item, clients);
      } finally {
        await closeFleet(clients);
        await target.stop();
      }
    }
  }
}

/**
 * A request to a target's API that gets no answer in this time fails. Long:
 * a target that falls behind (the single process, 15–22 s at 10 room pushes
 * a second to 10k clients) still answers, and fan-out counts what it accepted.
 */
const API_TIMEOUT_MS = 120_000;

/** GET a path of the target's API with its key; resolves with the JSON body. */
export async function apiGet(target, path) {
  const res = await fetch(`${target.apiUrl}${path}`, {
    headers: { authorization: `Bearer ${target.apiKey}` },
    signal: AbortSignal.timeout(API_TIMEOUT_MS),
  });
  return res.json();
}

/** POST a JSON body to the target's push API; resolves with { status, body }, or rejects after timeoutMs. */
export async function apiPost(target, path, body, timeoutMs = API_TIMEOUT_MS) {
  const res = await fetch(`${target.apiUrl}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${target.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed };
}
