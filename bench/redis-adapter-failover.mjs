import { createServer } from "node:http";
import { createRequire } from "node:module";
import { join } from "node:path";
import { Cluster } from "ioredis";
import { Server } from "socket.io";
import { io as connectClient } from "socket.io-client";
import { settings } from "./lib/knobs.mjs";
import { startRedisCluster } from "./lib/redis-cluster.mjs";
import { markdownTable, publish } from "./lib/report.mjs";
import { runBench } from "./lib/run.mjs";
import { nowMs, sleep } from "./lib/stats.mjs";
import { apiGet, apiPost, startTarget } from "./lib/targets.mjs";
import { benchApiKey, benchKeys } from "./lib/tokens.mjs";

/**
 * Why socket-server keeps its own adapter: the same failover (kill -9 of the
 * Redis Cluster master that serves one user's channel) under two workers of
 * one host, each pushing to that user every RA_INTERVAL_MS:
 *
 * - @socket.io/redis-adapter's sharded adapter (every worker its own Redis
 *   node, ioredis Cluster with shardedSubscribers, as its README sets it
 *   up): two Socket.IO servers in this process stand for the two workers;
 *   the user's socket is on worker 2; worker 1 pushes to it (another worker
 *   of the same host) and worker 2 pushes to it (its own socket);
 * - socket-server with WORKERS=2: sockets of the user on both workers;
 *   `POST /api/push` (the kernel hands each request to either worker).
 *
 * Counts what arrived and the worst delay. The adapter is not a dependency
 * of socket-server: install it anywhere and say where,
 *   npm i --prefix /tmp/ra @socket.io/redis-adapter@8.3.0
 *   RA_ADAPTER_DIR=/tmp/ra npm run build && node bench/redis-adapter-failover.mjs
 */
const SPEC = {
  RA_ADAPTER_DIR: ["", "a directory whose node_modules holds @socket.io/redis-adapter"],
  RA_INTERVAL_MS: [100, "one push per worker every this many ms"],
  RA_BEFORE_S: [2, "seconds of pushes before the kill"],
  RA_AFTER_S: [12, "seconds of pushes after the kill"],
  RA_NODE_TIMEOUT_MS: [1000, "cluster-node-timeout"],
  RA_SETTLE_MS: [5000, "wait for late deliveries after the last push"],
};

/** sent/delivered/lost and the worst delay of one stream of numbered pushes. */
function tally() {
  const sent = new Map();
  const got = new Map();
  return {
    sent: (i) => sent.set(i, nowMs()),
    got: (i) => got.set(i, Math.max(got.get(i) ?? 0, nowMs() - sent.get(i))),
    summary(killAt) {
      const after = [...sent.entries()].filter(([, t]) => t >= killAt).map(([i]) => i);
      return {
        sent: sent.size,
        delivered: got.size,
        lostAfterKill: after.filter((i) => !got.has(i)).length,
        worstDelayMs: Math.max(0, ...got.values()),
      };
    },
  };
}

// The adapter under comparison leaves SUNSUBSCRIBE promises without a
// catch when its server closes; their "Connection is closed." as the
// clients disconnect would end this process.
process.on("unhandledRejection", (err) => {
  if (err?.message !== "Connection is closed.") throw err;
});

async function redisAdapterCase(o, cluster) {
  const require = createRequire(join(o.RA_ADAPTER_DIR, "node_modules", "x.js"));
  const { createShardedAdapter } = require("@socket.io/redis-adapter");
  const nodes = cluster.seeds
    .split(",")
    .map((s) => ({ host: "127.0.0.1", port: Number(s.split(":")[1]) }));
  const workers = [];
  for (let w = 0; w < 2; w++) {
    const pub = new Cluster(nodes, { shardedSubscribers: true });
    const sub = new Cluster(nodes, { shardedSubscribers: true });
    for (const c of [pub, sub]) c.on("error", () => {});
    const http = createServer();
    const io = new Server(http, { adapter: createShardedAdapter(pub, sub) });
    await new Promise((r) => http.listen(0, "127.0.0.1", r));
    workers.push({ io, http, pub, sub, port: http.address().port });
  }
  const [w1, w2] = workers;
  w2.io.on("connection", (s) => s.join("user:bob"));
  const client = connectClient(`http://127.0.0.1:${w2.port}`, { transports: ["websocket"] });
  await new Promise((r) => client.once("connect", r));
  await sleep(1_000); // subscriptions in place
  const fromOther = tally();
  const fromOwn = tally();
  client.on("other", (i) => fromOther.got(i));
  client.on("own", (i) => fromOwn.got(i));
  const killAt = await drive(o, cluster, "socket.io#/#user:bob#", (i) => {
    fromOther.sent(i);
    w1.io.to("user:bob").emit("other", i);
    fromOwn.sent(i);
    w2.io.to("user:bob").emit("own", i);
  });
  client.close();
  for (const w of workers) {
    w.io.close();
    w.pub.disconnect();
    w.sub.disconnect();
  }
  return [
    {
      setup: "@socket.io/redis-adapter (sharded)",
      path: "worker 1 → socket on worker 2",
      ...fromOther.summary(killAt),
    },
    {
      setup: "@socket.io/redis-adapter (sharded)",
      path: "worker 2 → its own socket",
      ...fromOwn.summary(killAt),
    },
  ];
}

async function socketServerCase(o, cluster) {
  const keys = benchKeys("HS256");
  const apiKey = benchApiKey();
  const host = await startTarget("socket-server", {
    keys,
    apiKey,
    workers: 2,
    env: { REDIS_CLUSTER_NODES: cluster.seeds },
  });
  try {
    for (let i = 0; i < 300; i++) {
      const st = await apiGet(host, "/api/status").catch(() => undefined);
      if (st?.workers?.length === 2) break;
      await sleep(100);
    }
    const token = await keys.sign("bob", []);
    // Sockets of bob until both workers hold one (the kernel picks the worker).
    const sockets = [];
    const workersHeld = new Set();
    while (workersHeld.size < 2 && sockets.length < 16) {
      const s = connectClient(host.publicUrl, { transports: ["websocket"], auth: { token } });
      await new Promise((r) => s.once("connect", r));
      await s.emitWithAck("register", { userId: "bob" });
      workersHeld.add(Number.parseInt(s.io.engine.id.split("_")[0], 36));
      sockets.push(s);
    }
    const streams = sockets.map(() => tally());
    sockets.forEach((s, k) => {
      s.on("seq", (i) => streams[k].got(i));
    });
    const killAt = await drive(o, cluster, "socket-server:sio#/#user:bob#", (i) => {
      for (const t of streams) t.sent(i);
      apiPost(host, "/api/push", { userId: "bob", event: "seq", payload: i }).catch(() => {});
    });
    for (const s of sockets) s.close();
    const all = streams.map((t) => t.summary(killAt));
    return [
      {
        setup: "socket-server (WORKERS=2)",
        path: `either worker → ${sockets.length} sockets on both workers`,
        sent: all[0].sent,
        delivered: Math.min(...all.map((r) => r.delivered)),
        lostAfterKill: Math.max(...all.map((r) => r.lostAfterKill)),
        worstDelayMs: Math.max(...all.map((r) => r.worstDelayMs)),
      },
    ];
  } finally {
    await host.stop();
  }
}

/** Pushes every interval; kills the master of `channel`'s slot after RA_BEFORE_S; returns the kill time. */
async function drive(o, cluster, channel, pushOnce) {
  const master = cluster.masterOf(channel);
  const total = Math.round(((o.RA_BEFORE_S + o.RA_AFTER_S) * 1000) / o.RA_INTERVAL_MS);
  const killIndex = Math.round((o.RA_BEFORE_S * 1000) / o.RA_INTERVAL_MS);
  let killAt = 0;
  for (let i = 0; i < total; i++) {
    if (i === killIndex) {
      killAt = nowMs();
      cluster.kill(master);
    }
    pushOnce(i);
    await sleep(o.RA_INTERVAL_MS);
  }
  await sleep(o.RA_SETTLE_MS);
  return killAt;
}

async function main() {
  const o = settings(
    "bench: a master failover under @socket.io/redis-adapter vs socket-server",
    SPEC,
  );
  if (!o.RA_ADAPTER_DIR)
    throw new Error("RA_ADAPTER_DIR: install @socket.io/redis-adapter there first");
  const rows = [];
  for (const run of [redisAdapterCase, socketServerCase]) {
    const cluster = await startRedisCluster({ masters: 3, nodeTimeoutMs: o.RA_NODE_TIMEOUT_MS });
    try {
      const r = await run(o, cluster);
      for (const row of r) process.stdout.write(`${JSON.stringify(row)}\n`);
      rows.push(...r);
    } finally {
      await cluster.stop();
    }
  }
  const columns = [
    { key: "setup", title: "setup" },
    { key: "path", title: "push path (one host)" },
    { key: "sent", title: "pushes", digits: 0 },
    { key: "delivered", title: "delivered", digits: 0 },
    { key: "lostAfterKill", title: "lost (sent after the kill)", digits: 0 },
    { key: "worstDelayMs", title: "worst delay ms", digits: 0 },
  ];
  publish(
    "redis-adapter-failover",
    { settings: o, rows },
    "kill -9 of the user's Redis Cluster master: two workers of one host pushing to one user",
    [markdownTable(columns, rows)],
  );
}

await runBench(main);
