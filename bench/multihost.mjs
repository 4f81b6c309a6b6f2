import { closeFleet, openFleet } from "./lib/fleet.mjs";
import { settings } from "./lib/knobs.mjs";
import { loadMeter } from "./lib/proc.mjs";
import { pushLoad } from "./lib/push-load.mjs";
import { startRedis } from "./lib/redis.mjs";
import { COLUMNS, markdownTable, publish } from "./lib/report.mjs";
import { runBench } from "./lib/run.mjs";
import { deliveryCounter, settle, sleep } from "./lib/stats.mjs";
import { apiGet, startTarget } from "./lib/targets.mjs";
import { benchApiKey, benchTokens } from "./lib/tokens.mjs";

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

/** Until each host's /api/status lists every worker of both hosts. */
async function waitForHosts(hosts, workers) {
  for (const h of hosts) {
    for (let i = 0; ; i++) {
      const st = await apiGet(h, "/api/status").catch(() => undefined);
      if (st?.workers?.length === hosts.length * workers && !st.missingHosts) break;
      if (i > 300) throw new Error("hosts did not see each other within 30 s");
      await sleep(100);
    }
  }
}

const cannon = (target, o, load) => pushLoad(target, { users: o.MH_USERS, ...load });

async function run(entry, o, state, load, hosts, redis) {
  const delivered = () => state.delivered;
  await cannon(entry, o, { ...load, duration: o.MH_WARMUP_S });
  await settle(delivered, o.MH_SETTLE_MS);
  state.reset();
  const out0 = redis.outBytes();
  const meter = loadMeter(hosts);
  const res = await cannon(entry, o, { ...load, duration: o.MH_DURATION_S });
  const { serverCpu, loadgenCores } = meter.stop();
  await settle(delivered, o.MH_SETTLE_MS);
  const redisOut = redis.outBytes() - out0;
  return {
    redisOutBytesPerPush: res["2xx"] ? redisOut / res["2xx"] : Number.NaN,
    pushesPerSec: res["2xx"] / o.MH_DURATION_S,
    non2xx: res.non2xx,
    httpP99Ms: res.latency.p99,
    accepted: res["2xx"],
    delivered: state.delivered,
    ...state.latencyFields(),
    serverCores: serverCpu.totalCores,
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
      const state = deliveryCounter("bench:push");
      try {
        const fleet = await openFleet(b, tokens, { onEvent: state.onEvent, concurrency: 100 });
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
    COLUMNS.round,
    { key: "mode", title: "mode" },
    { key: "load", title: "load" },
    { key: "path", title: "path" },
    { key: "pushesPerSec", title: "pushes/s", digits: 0 },
    COLUMNS.non2xx,
    { get: (r) => `${r.delivered}/${r.accepted}`, title: "delivered/accepted" },
    ...COLUMNS.delivery,
    { key: "redisOutBytesPerPush", title: "Redis out bytes/push", digits: 0 },
    COLUMNS.serverCores,
    COLUMNS.loadgenCores,
  ];
  const title = `Many hosts: POST /api/push to 1 random user, ${o.MH_HOSTS} hosts × ${o.MH_WORKERS} workers on one Redis`;
  publish("multihost", { settings: o, rows }, title, [markdownTable(columns, rows)]);
}

/** Host A's own workers (their host id ends with its primary's pid). */
async function memory(host) {
  const st = await apiGet(host, "/api/status");
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
      await settle(() => delivered, o.MH_SETTLE_MS);
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
    publish(
      "multihost-outage",
      { settings: o, mode, rows, duplicates, restarted },
      `Many hosts: Redis killed and restarted under ${o.MH_RATE} pushes/s (${mode})`,
      [
        markdownTable(columns, rows),
        `duplicate deliveries: ${duplicates}; worker or primary restarted: ${restarted ? "yes" : "no"}`,
      ],
    );
  } finally {
    for (const h of hosts) await h.stop();
    await redis.kill();
  }
}

async function main() {
  const o = settings("bench: many hosts (two hosts on one Redis)", SPEC);
  const { keys, tokens } = await benchTokens("HS256", o.MH_USERS);
  if (o.MH_SCENARIO === "outage") await outage(o, keys, tokens);
  else await throughput(o, keys, tokens);
}

await runBench(main);
