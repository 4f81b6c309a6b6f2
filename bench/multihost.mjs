import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { closeFleet, openFleet } from "./lib/fleet.mjs";
import { knobs, printKnobs } from "./lib/knobs.mjs";
import { selfCpuMeter } from "./lib/proc.mjs";
import { markdownTable, printReport, writeResult } from "./lib/report.mjs";
import { nowMs, Recorder, sleep } from "./lib/stats.mjs";
import { startTarget } from "./lib/targets.mjs";
import { benchApiKey, benchKeys, signMany } from "./lib/tokens.mjs";

/**
 * Many hosts: MH_HOSTS socket-server hosts on one redis-server, all on this
 * machine. MH_USERS clients register on the last host (B); autocannon sends
 * `POST /api/push` (one random user each) to the first (A: cross-host,
 * through Redis) and, for comparison in the same round, to B itself (the
 * user's own host). Redis' output bytes per push show what each mode makes
 * Redis send (classic: to every worker of every host; sharded: to B). Each is run flat out (throughput) and at a
 * fixed MH_RATE (latency without queueing), for each REDIS_ADAPTER_MODE.
 *
 * MH_SCENARIO=outage instead pushes at MH_RATE across hosts while Redis is
 * killed for MH_OUTAGE_S and started again: worker restarts, duplicates,
 * pushes accepted/delivered per phase, and the hosts' memory before, during
 * and after.
 *
 *   npm run build && node bench/multihost.mjs
 *   MH_SCENARIO=outage node bench/multihost.mjs
 */
const SPEC = {
  MH_SCENARIO: ["throughput", "throughput (cross-host vs same-host) or outage"],
  MH_MODES: [["classic", "sharded"], "REDIS_ADAPTER_MODE values to compare"],
  BENCH_ROUNDS: [2, "interleaved rounds (each runs every mode)"],
  MH_HOSTS: [2, "hosts: pushes enter the first, users are on the last, the others idle"],
  MH_WORKERS: [1, "workers per host (the hosts, Redis and the load generator share this machine)"],
  MH_USERS: [1000, "registered websocket clients on host B, one per user"],
  MH_CONNECTIONS: [32, "autocannon keep-alive connections (flat-out runs)"],
  MH_DURATION_S: [10, "measured seconds per run"],
  MH_WARMUP_S: [2, "unmeasured seconds of the same load first"],
  MH_RATE: [1000, "pushes per second of the fixed-rate runs and of the outage scenario"],
  MH_OUTAGE_S: [5, "outage scenario: seconds Redis stays down"],
  MH_SETTLE_MS: [3000, "longest wait for the last deliveries after the load stops"],
};

const SETUP = fileURLToPath(new URL("./lib/push-request.cjs", import.meta.url));

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A redis-server on a free port that can be killed and started again on it. */
async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "ss-bench-redis-"));
  let proc;
  const launch = () =>
    new Promise((resolve, reject) => {
      proc = spawn(
        "redis-server",
        [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--dir",
          dir,
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let out = "";
      proc.stdout.on("data", (c) => {
        out += c;
        if (out.includes("Ready to accept connections")) resolve();
      });
      proc.once("exit", (code) => reject(new Error(`redis exited ${code}: ${out}`)));
    });
  await launch();
  const kill = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await gone;
  };
  process.once("exit", () => proc.kill("SIGKILL"));
  /** Bytes Redis has sent to its clients so far (pub/sub deliveries, mostly). */
  const outBytes = () => {
    const info = execFileSync("redis-cli", ["-p", String(port), "info", "stats"]).toString();
    return Number(/total_net_output_bytes:(\d+)/.exec(info)?.[1] ?? Number.NaN);
  };
  return { url: `redis://127.0.0.1:${port}`, kill, restart: launch, outBytes };
}

async function api(target, method, path) {
  const res = await fetch(`${target.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${target.apiKey}` },
  });
  return res.json();
}

/** Until each host's /api/status lists every worker of both hosts. */
async function waitForHosts(hosts, workers) {
  for (const h of hosts) {
    for (let i = 0; ; i++) {
      const st = await api(h, "GET", "/api/status").catch(() => undefined);
      if (st?.workers?.length === hosts.length * workers && !st.missingHosts) break;
      if (i > 300) throw new Error("hosts did not see each other within 30 s");
      await sleep(100);
    }
  }
}

function cannon(target, o, { duration, connections, rate }) {
  process.env.BENCH_PUSH_USERS = String(o.MH_USERS);
  process.env.BENCH_PUSH_BATCH_SIZE = "0";
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: target.apiUrl,
        connections,
        duration,
        workers: 1,
        ...(rate ? { overallRate: rate } : {}),
        requests: [
          {
            method: "POST",
            path: "/api/push",
            headers: {
              authorization: `Bearer ${target.apiKey}`,
              "content-type": "application/json",
            },
            setupRequest: SETUP,
          },
        ],
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
}

async function settle(state, maxMs) {
  const until = performance.now() + maxMs;
  let last = -1;
  while (performance.now() < until && state.delivered !== last) {
    last = state.delivered;
    await sleep(300);
  }
}

async function run(entry, o, state, load, hosts, redis) {
  await cannon(entry, o, { ...load, duration: o.MH_WARMUP_S });
  await settle(state, o.MH_SETTLE_MS);
  state.delivered = 0;
  state.latency = new Recorder();
  const cpus = hosts.map((h) => h.cpu());
  const out0 = redis.outBytes();
  for (const c of cpus) c.start();
  const self = selfCpuMeter();
  self.start();
  const res = await cannon(entry, o, { ...load, duration: o.MH_DURATION_S });
  const serverCores = cpus.reduce((n, c) => n + c.stop().totalCores, 0);
  const loadgenCores = self.stop();
  await settle(state, o.MH_SETTLE_MS);
  const redisOut = redis.outBytes() - out0;
  const lat = state.latency.summary();
  return {
    redisOutBytesPerPush: res["2xx"] ? redisOut / res["2xx"] : Number.NaN,
    pushesPerSec: res["2xx"] / o.MH_DURATION_S,
    non2xx: res.non2xx,
    httpP99Ms: res.latency.p99,
    accepted: res["2xx"],
    delivered: state.delivered,
    deliveryP50Ms: lat.p50,
    deliveryP99Ms: lat.p99,
    deliveryMaxMs: lat.max,
    serverCores,
    loadgenCores,
  };
}

/** MH_HOSTS hosts on one Redis; the first takes the pushes, the last holds the users. */
async function startHosts(o, keys, redisUrl, mode) {
  const env = { REDIS_URL: redisUrl, REDIS_ADAPTER_MODE: mode };
  const apiKey = benchApiKey();
  const hosts = [];
  for (let i = 0; i < Math.max(2, o.MH_HOSTS); i++) {
    hosts.push(await startTarget("socket-server", { keys, apiKey, workers: o.MH_WORKERS, env }));
  }
  await waitForHosts(hosts, o.MH_WORKERS);
  return hosts;
}

async function throughput(o, keys, tokens) {
  const rows = [];
  for (let round = 0; round < o.BENCH_ROUNDS; round++) {
    const modes = round % 2 ? [...o.MH_MODES].reverse() : o.MH_MODES;
    for (const mode of modes) {
      const redis = await startRedis();
      const hosts = await startHosts(o, keys, redis.url, mode);
      const [a, b] = [hosts[0], hosts.at(-1)];
      const state = { delivered: 0, latency: new Recorder() };
      const onEvent = (event, payload) => {
        if (event !== "bench:push") return;
        state.delivered += 1;
        state.latency.add(nowMs() - payload.t);
      };
      try {
        const fleet = await openFleet(b, tokens, { onEvent, concurrency: 100 });
        if (fleet.completed !== o.MH_USERS)
          throw new Error(`only ${fleet.completed} clients registered`);
        const loads = [
          ["flat out", { connections: o.MH_CONNECTIONS }],
          [`${o.MH_RATE}/s`, { connections: 16, rate: o.MH_RATE }],
        ];
        for (const [loadName, load] of loads) {
          for (const [path, entry] of [
            ["cross-host (A→B)", a],
            ["same host (B→B)", b],
          ]) {
            const r = await run(entry, o, state, load, hosts, redis);
            rows.push({ round, mode, load: loadName, path, ...r });
            process.stdout.write(
              `round ${round} ${mode} ${loadName} ${path}: ${r.pushesPerSec.toFixed(0)} pushes/s, delivered ${r.delivered}/${r.accepted}, p50 ${r.deliveryP50Ms.toFixed(1)} ms, p99 ${r.deliveryP99Ms.toFixed(1)} ms\n`,
            );
          }
        }
        await closeFleet(fleet.clients);
      } finally {
        for (const h of hosts) await h.stop();
        await redis.kill();
      }
    }
  }
  const columns = [
    { key: "round", title: "round", digits: 0 },
    { key: "mode", title: "mode" },
    { key: "load", title: "load" },
    { key: "path", title: "path" },
    { key: "pushesPerSec", title: "pushes/s", digits: 0 },
    { key: "non2xx", title: "non-2xx", digits: 0 },
    { get: (r) => `${r.delivered}/${r.accepted}`, title: "delivered/accepted" },
    { key: "deliveryP50Ms", title: "delivery p50 ms", digits: 1 },
    { key: "deliveryP99Ms", title: "delivery p99 ms", digits: 1 },
    { key: "deliveryMaxMs", title: "delivery max ms", digits: 1 },
    { key: "redisOutBytesPerPush", title: "Redis out bytes/push", digits: 0 },
    { key: "serverCores", title: "server CPU (cores)", digits: 2 },
    { key: "loadgenCores", title: "loadgen CPU (cores)", digits: 2 },
  ];
  const { machine, file } = writeResult("multihost", { settings: o, rows });
  const title = `Many hosts: POST /api/push to 1 random user, ${o.MH_HOSTS} hosts × ${o.MH_WORKERS} workers on one Redis`;
  printReport(title, machine, [markdownTable(columns, rows), `result: ${file}`]);
}

/** Host A's own workers (their host id ends with its primary's pid). */
async function memory(host) {
  const st = await api(host, "GET", "/api/status");
  st.workers = st.workers.filter((w) => w.host?.endsWith(`:${host.pid}`));
  return {
    rssMb: host.rss().totalKb / 1024,
    heapMb: st.workers.reduce((n, w) => n + (w.heapUsedBytes ?? 0), 0) / 2 ** 20,
    dropped: st.workers.reduce((n, w) => n + (w.crossHostDropped ?? 0), 0),
  };
}

async function outage(o, keys, tokens) {
  const mode = o.MH_MODES[0];
  const redis = await startRedis();
  const hosts = await startHosts(o, keys, redis.url, mode);
  const [a, b] = [hosts[0], hosts.at(-1)];
  const seen = new Map();
  let delivered = 0;
  const onEvent = (event, payload) => {
    if (event !== "bench:push") return;
    delivered += 1;
    seen.set(payload.t, (seen.get(payload.t) ?? 0) + 1);
  };
  const rows = [];
  try {
    const fleet = await openFleet(b, tokens, { onEvent, concurrency: 100 });
    const pids = hosts
      .flatMap((h) => h.pids())
      .sort()
      .join(",");
    const phase = async (name, seconds, during) => {
      const before = { delivered, mem: await memory(a) };
      const load = cannon(a, o, { duration: seconds, connections: 16, rate: o.MH_RATE });
      await during?.();
      const res = await load;
      await settle(
        {
          get delivered() {
            return delivered;
          },
        },
        o.MH_SETTLE_MS,
      );
      const mem = await memory(a);
      rows.push({
        phase: name,
        accepted: res["2xx"],
        non2xx: res.non2xx,
        delivered: delivered - before.delivered,
        droppedByHostA: mem.dropped - before.mem.dropped,
        rssMb: mem.rssMb,
        heapMb: mem.heapMb,
      });
      process.stdout.write(`${name}: ${JSON.stringify(rows.at(-1))}\n`);
    };
    await phase("Redis up", o.MH_OUTAGE_S);
    await phase(`Redis killed for ${o.MH_OUTAGE_S} s`, o.MH_OUTAGE_S, () => redis.kill());
    await redis.restart();
    await waitForHosts(hosts, o.MH_WORKERS);
    await phase("Redis back", o.MH_OUTAGE_S);
    const duplicates = [...seen.values()].filter((n) => n > 1).length;
    const restarted =
      hosts
        .flatMap((h) => h.pids())
        .sort()
        .join(",") !== pids;
    await closeFleet(fleet.clients);
    const columns = [
      { key: "phase", title: "phase" },
      { key: "accepted", title: "accepted (2xx)", digits: 0 },
      { key: "non2xx", title: "non-2xx", digits: 0 },
      { key: "delivered", title: "delivered on host B", digits: 0 },
      { key: "droppedByHostA", title: "cross-host messages dropped by A", digits: 0 },
      { key: "rssMb", title: "host A RSS MB", digits: 1 },
      { key: "heapMb", title: "host A worker heap MB", digits: 1 },
    ];
    const { machine, file } = writeResult("multihost-outage", {
      settings: o,
      mode,
      rows,
      duplicates,
      restarted,
    });
    printReport(
      `Many hosts: Redis killed and restarted under ${o.MH_RATE} pushes/s (${mode})`,
      machine,
      [
        markdownTable(columns, rows),
        `duplicate deliveries: ${duplicates}; worker or primary restarted: ${restarted ? "yes" : "no"}`,
        `result: ${file}`,
      ],
    );
  } finally {
    for (const h of hosts) await h.stop();
    await redis.kill();
  }
}

async function main() {
  const o = knobs(SPEC);
  printKnobs("bench: many hosts (two hosts on one Redis)", SPEC, o);
  const keys = benchKeys("HS256");
  const tokens = await signMany(keys, o.MH_USERS);
  if (o.MH_SCENARIO === "outage") await outage(o, keys, tokens);
  else await throughput(o, keys, tokens);
}

await main();
