import { closeFleet, openFleet } from "./lib/fleet.mjs";
import { settings } from "./lib/knobs.mjs";
import { loadMeter } from "./lib/proc.mjs";
import { pushLoad } from "./lib/push-load.mjs";
import { startRedisCluster } from "./lib/redis-cluster.mjs";
import { markdownTable, publish } from "./lib/report.mjs";
import { runBench } from "./lib/run.mjs";
import { deliveryCounter, nowMs, settle, sleep } from "./lib/stats.mjs";
import { apiGet, apiPost, startTarget } from "./lib/targets.mjs";
import { benchApiKey, benchTokens } from "./lib/tokens.mjs";

/**
 * Hosts on a Redis Cluster (RC_MASTERS masters, one replica each), all on
 * this machine. RC_USERS clients register on the last host; autocannon sends
 * `POST /api/push` (one random user each) to the first host, so every push
 * crosses hosts through the cluster. Per REDIS_ADAPTER_MODE:
 * - pushes/s and delivery latency, flat out;
 * - Redis-side bytes per push: what all nodes sent their clients, and the
 *   PUBLISH messages the nodes sent each other over the cluster bus;
 * - how many subscriber connections (workers; hosts with RC_WORKERS=1) a
 *   push to one user reaches through Redis: SHARDNUMSUB of the user's
 *   channel (sharded) or NUMSUB of the shared channel on every node
 *   (classic), plus the host that took the push (it delivers over IPC);
 * - failover: kill -9 of the master that serves one user's channel, then a
 *   push to that user every RC_PROBE_MS: time to the first one delivered
 *   again, and to /ready 200 on every host.
 *
 *   npm run build && node bench/redis-cluster.mjs
 */
const SPEC = {
  RC_MODES: [["sharded", "classic"], "REDIS_ADAPTER_MODE values to compare"],
  RC_MASTERS: [3, "cluster masters (each with one replica)"],
  RC_NODE_TIMEOUT_MS: [1000, "cluster-node-timeout (failure detection; Redis' default is 15000)"],
  RC_HOSTS: [3, "hosts: pushes enter the first, users are on the last"],
  RC_WORKERS: [1, "workers per host"],
  RC_USERS: [500, "registered websocket clients on the last host, one per user"],
  RC_CONNECTIONS: [16, "autocannon keep-alive connections"],
  RC_DURATION_S: [8, "measured seconds of pushes"],
  RC_WARMUP_S: [2, "unmeasured seconds of the same load first"],
  RC_FAILOVER: ["yes", "also time a master's failover (yes/no)"],
  RC_PROBE_MS: [100, "failover: one push to the probe user every this many ms"],
  RC_SETTLE_MS: [3000, "longest wait for the last deliveries after the load stops"],
};

const PREFIX = "socket-server";
const userChannel = (u, sharded) => (sharded ? `${PREFIX}:sio#/#user:${u}#` : `${PREFIX}:sio#/#`);

async function waitForHosts(hosts, workers) {
  for (const h of hosts) {
    for (let i = 0; ; i++) {
      const ready = await fetch(`${h.apiUrl}/ready`).catch(() => undefined);
      const st = await apiGet(h, "/api/status").catch(() => undefined);
      if (
        ready?.status === 200 &&
        st?.workers?.length === hosts.length * workers &&
        !st.missingHosts
      )
        break;
      if (i > 300) throw new Error("hosts did not see each other within 30 s");
      await sleep(100);
    }
  }
}

async function failover(cluster, hosts, state, user, o) {
  const [a] = hosts;
  // The master of the user's slot (its channel in sharded mode).
  const master = cluster.masterOf(userChannel(user, true));
  const seen = new Set();
  state.onProbe = (payload) => seen.add(payload.probe);
  const t0 = nowMs();
  cluster.kill(master);
  let i = 0;
  let firstMs;
  while (nowMs() - t0 < 30_000) {
    const n = i++;
    apiPost(a, "/api/push", {
      userId: user,
      event: "bench:push",
      payload: { t: nowMs(), probe: n },
    }).catch(() => {});
    await sleep(o.RC_PROBE_MS);
    if (seen.size > 0) {
      firstMs = nowMs() - t0;
      break;
    }
  }
  let readyMs;
  for (let k = 0; k < 300; k++) {
    const codes = await Promise.all(
      hosts.map((h) =>
        fetch(`${h.apiUrl}/ready`).then(
          (r) => r.status,
          () => 0,
        ),
      ),
    );
    if (codes.every((c) => c === 200)) {
      readyMs = nowMs() - t0;
      break;
    }
    await sleep(100);
  }
  state.onProbe = undefined;
  return { killedMaster: master, firstCrossHostPushMs: firstMs, readyAgainMs: readyMs };
}

async function runMode(mode, o, keys, tokens) {
  const cluster = await startRedisCluster({
    masters: o.RC_MASTERS,
    nodeTimeoutMs: o.RC_NODE_TIMEOUT_MS,
  });
  const apiKey = benchApiKey();
  const env = { REDIS_CLUSTER_NODES: cluster.seeds, REDIS_ADAPTER_MODE: mode };
  const hosts = [];
  const counter = deliveryCounter("bench:push");
  const state = { mode, onProbe: undefined };
  const onEvent = (name, payload) => {
    if (payload?.probe !== undefined) state.onProbe?.(payload);
    else counter.onEvent(name, payload);
  };
  try {
    for (let i = 0; i < o.RC_HOSTS; i++) {
      hosts.push(await startTarget("socket-server", { keys, apiKey, workers: o.RC_WORKERS, env }));
    }
    await waitForHosts(hosts, o.RC_WORKERS);
    const [a, c] = [hosts[0], hosts.at(-1)];
    const fleet = await openFleet(c, tokens, { onEvent, concurrency: 100 });
    if (fleet.completed !== o.RC_USERS)
      throw new Error(`only ${fleet.completed} clients registered`);

    const load = { users: o.RC_USERS, connections: o.RC_CONNECTIONS };
    await pushLoad(a, { ...load, duration: o.RC_WARMUP_S });
    await settle(() => counter.delivered, o.RC_SETTLE_MS);
    counter.reset();
    const out0 = cluster.outBytes();
    const bus0 = cluster.busPublishes();
    const meter = loadMeter(hosts);
    const res = await pushLoad(a, { ...load, duration: o.RC_DURATION_S });
    const { serverCpu } = meter.stop();
    await settle(() => counter.delivered, o.RC_SETTLE_MS);
    const accepted = res["2xx"];
    const row = {
      mode,
      pushesPerSec: accepted / o.RC_DURATION_S,
      non2xx: res.non2xx,
      accepted,
      delivered: counter.delivered,
      ...counter.latencyFields(),
      redisOutBytesPerPush: (cluster.outBytes() - out0) / accepted,
      busPublishesPerPush: (cluster.busPublishes() - bus0) / accepted,
      receiversViaRedis: cluster.receivers(
        userChannel("u0", mode === "sharded"),
        mode === "sharded",
      ),
      serverCores: serverCpu.totalCores,
    };
    process.stdout.write(`${mode}: ${JSON.stringify(row)}\n`);
    if (o.RC_FAILOVER === "yes") {
      Object.assign(row, await failover(cluster, hosts, state, "u1", o));
      process.stdout.write(`${mode} failover: ${JSON.stringify(row)}\n`);
    }
    await closeFleet(fleet.clients);
    return row;
  } finally {
    for (const h of hosts) await h.stop();
    await cluster.stop();
  }
}

async function main() {
  const o = settings("bench: hosts on a Redis Cluster (sharded vs classic pub/sub)", SPEC);
  const { keys, tokens } = await benchTokens("HS256", o.RC_USERS);
  const rows = [];
  for (const mode of o.RC_MODES) rows.push(await runMode(mode, o, keys, tokens));
  const columns = [
    { key: "mode", title: "mode" },
    { key: "pushesPerSec", title: "pushes/s", digits: 0 },
    { get: (r) => `${r.delivered}/${r.accepted}`, title: "delivered/accepted" },
    { key: "deliveryP50Ms", title: "delivery p50 ms", digits: 1 },
    { key: "deliveryP99Ms", title: "delivery p99 ms", digits: 1 },
    { key: "redisOutBytesPerPush", title: "Redis out bytes/push (all nodes)", digits: 0 },
    { key: "busPublishesPerPush", title: "bus PUBLISH msgs/push", digits: 2 },
    {
      get: (r) => `${r.receiversViaRedis} + 1`,
      title: "workers reached by a user push (via Redis + the taker)",
    },
    { key: "firstCrossHostPushMs", title: "kill -9 → first cross-host push ms", digits: 0 },
    { key: "readyAgainMs", title: "kill -9 → /ready 200 ms", digits: 0 },
    { key: "serverCores", title: "server cores", digits: 2 },
  ];
  publish(
    "redis-cluster",
    { settings: o, rows },
    `Hosts on a Redis Cluster: ${o.RC_HOSTS} hosts × ${o.RC_WORKERS} workers, ${o.RC_MASTERS} masters + ${o.RC_MASTERS} replicas`,
    [markdownTable(columns, rows)],
  );
}

await runBench(main);
