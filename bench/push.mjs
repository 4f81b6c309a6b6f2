import { openFleet } from "./lib/fleet.mjs";
import { COMMON, settings } from "./lib/knobs.mjs";
import { startLagListener } from "./lib/lag-listener.mjs";
import { loadMeter } from "./lib/proc.mjs";
import { pushLoad } from "./lib/push-load.mjs";
import { startRedis } from "./lib/redis.mjs";
import { COLUMNS, describeRatios, markdownTable, publish, ratios } from "./lib/report.mjs";
import { runBench } from "./lib/run.mjs";
import { deliveryCounter, settle } from "./lib/stats.mjs";
import { apiPost, eachTargetRound, withVariants } from "./lib/targets.mjs";
import { benchTokens } from "./lib/tokens.mjs";

/**
 * User pushes: autocannon on `POST /api/push` to random users among
 * PUSH_USERS registered websocket clients → pushes per second (counted as
 * deliveries at the clients, see measure()), HTTP latency, delivered vs sent,
 * delivery latency (send time in the payload). Then the same through `/api/push/batch` where the target has
 * it. Then room pushes (PUSH_ROOMS > 0): every client is in a plain room
 * `bench:r<k>` and a history room `bench:h:<k>` (k = its index mod
 * PUSH_ROOMS; socket-server runs with HISTORY_ROOMS=bench:h:*), and the same
 * load pushes to random plain rooms, then to random history rooms: the
 * ratio of the two, in the same run and server, is the cost of history
 * (positions, ordering). Targets run interleaved, PUSH rounds each.
 */
const HISTORY_PREFIX = "bench:h:";
const PLAIN_PREFIX = "bench:r";
const SPEC = {
  ...COMMON,
  PUSH_USERS: [1000, "registered websocket clients, one per user"],
  PUSH_CONNECTIONS: [32, "autocannon HTTP keep-alive connections"],
  PUSH_PIPELINING: [1, "requests in flight per connection"],
  PUSH_RATE: [0, "requests per second, all connections together (0: as fast as they go)"],
  PUSH_DURATION_S: [10, "measured seconds per target and round"],
  PUSH_WARMUP_S: [2, "unmeasured seconds of the same load first (0: none)"],
  PUSH_SETTLE_MS: [3000, "longest wait for the last deliveries after the load stops"],
  PUSH_BATCH_SIZE: [10, "pushes per /api/push/batch request (0: skip the batch run)"],
  PUSH_ALG: ["ES256", "JWT algorithm of the clients (ES256 or HS256)"],
  PUSH_ROOMS: [100, "rooms of the room runs, plain and history (0: skip them)"],
  PUSH_REDIS: [0, "1: socket-server with a redis-server of its own (REDIS_URL: history in Redis)"],
};

/** Measures one target: warm-up, then the measured run, then waits for stragglers. */
async function measure(target, o, lag, state, path, batch, roomPrefix) {
  const cannon = (duration) =>
    pushLoad(target, {
      users: o.PUSH_USERS,
      connections: o.PUSH_CONNECTIONS,
      pipelining: o.PUSH_PIPELINING,
      duration,
      path,
      batch,
      ...(o.PUSH_RATE > 0 ? { rate: o.PUSH_RATE } : {}),
      ...(roomPrefix ? { roomPrefix, rooms: o.PUSH_ROOMS } : {}),
    });
  const delivered = () => state.delivered;
  if (o.PUSH_WARMUP_S > 0) {
    await cannon(o.PUSH_WARMUP_S);
    await settle(delivered, o.PUSH_SETTLE_MS);
  }
  state.reset();
  const meter = loadMeter(target, lag);
  const res = await cannon(o.PUSH_DURATION_S);
  const { serverCpu, loadgenCores } = meter.stop();
  const lagWin = meter.lag();
  await settle(delivered, o.PUSH_SETTLE_MS);
  // A room push reaches every client of its room.
  const per = (batch || 1) * (roomPrefix ? o.PUSH_USERS / o.PUSH_ROOMS : 1);
  // Each push goes to one user with one socket, so deliveries count the
  // pushes the server took, whoever counted the answer. autocannon's own 2xx
  // count misses answers on connections the server closes after each
  // response (the docs recipe's sticky layer does): there it counted half of
  // what was sent and delivered. So throughput is deliveries per second, and
  // `lost` = pushes sent − refused − delivered (a few requests in flight at
  // the stop may land on either side).
  const sent = res.requests.sent * per;
  const refused = (res.non2xx + res.errors + res.timeouts) * per;
  return {
    reqPerSec: state.delivered / per / o.PUSH_DURATION_S,
    pushesPerSec: (state.delivered * (batch || 1)) / per / o.PUSH_DURATION_S,
    deliveriesPerSec: state.delivered / o.PUSH_DURATION_S,
    autocannon2xxPerSec: res["2xx"] / o.PUSH_DURATION_S,
    httpP50Ms: res.latency.p50,
    httpP99Ms: res.latency.p99,
    non2xx: res.non2xx,
    errors: res.errors + res.timeouts,
    sent,
    accepted: res["2xx"] * per,
    delivered: state.delivered,
    lost: sent - refused - state.delivered,
    ...state.latencyFields(),
    serverCores: serverCpu.totalCores,
    serverCoresPerProcess: serverCpu.perPid.map((p) => Number(p.cores.toFixed(2))),
    serverCpuUsPerPush: (serverCpu.totalCores * 1e6) / (state.delivered / o.PUSH_DURATION_S),
    loadgenCores,
    lagP99WorstMs: lagWin.worstP99Ms,
  };
}

async function main() {
  const o = settings("bench: user pushes (POST /api/push)", SPEC);
  const { keys, tokens } = await benchTokens(o.PUSH_ALG, o.PUSH_USERS);
  const lag = await startLagListener();
  const rows = [];
  const batchRows = [];

  const roomRows = [];
  const rooms = o.PUSH_ROOMS;
  const redis = o.PUSH_REDIS ? await startRedis() : undefined;
  const targets = withVariants(o.BENCH_TARGETS, [
    {
      label: "socket-server",
      env: { HISTORY_ROOMS: `${HISTORY_PREFIX}*`, ...(redis ? { REDIS_URL: redis.url } : {}) },
    },
  ]);
  await eachTargetRound(
    o,
    { keys, probePort: lag.port, targets },
    async (target, round, item, clients) => {
      const name = item.label;
      const state = deliveryCounter("bench:push");
      // A lost handshake (the docs recipe loses some) is retried: this bench is about pushes.
      const fleet = await openFleet(target, tokens, {
        onEvent: state.onEvent,
        concurrency: 100,
        retries: 3,
        ...(rooms > 0
          ? { room: (i) => [`${PLAIN_PREFIX}${i % rooms}`, `${HISTORY_PREFIX}${i % rooms}`] }
          : {}),
      });
      clients.push(...fleet.clients);
      if (fleet.completed !== o.PUSH_USERS) {
        throw new Error(`${name}: only ${fleet.completed} of ${o.PUSH_USERS} clients registered`);
      }
      const r = await measure(target, o, lag, state, "/api/push", 0);
      rows.push({ target: name, round, ...r });
      process.stdout.write(
        `round ${round} ${name}: ${r.reqPerSec.toFixed(0)} req/s, sent ${r.sent}, delivered ${r.delivered}, p99 ${r.deliveryP99Ms.toFixed(1)} ms\n`,
      );
      if (o.PUSH_BATCH_SIZE > 0) {
        const probe = await apiPost(target, "/api/push/batch", {
          pushes: [{ userId: "u0", event: "bench:probe", payload: {} }],
        });
        if (probe.status >= 200 && probe.status < 300) {
          const b = await measure(target, o, lag, state, "/api/push/batch", o.PUSH_BATCH_SIZE);
          batchRows.push({ target: name, round, ...b });
          process.stdout.write(
            `round ${round} ${name} batch: ${b.pushesPerSec.toFixed(0)} pushes/s, sent ${b.sent}, delivered ${b.delivered}\n`,
          );
        } else {
          process.stdout.write(`round ${round} ${name}: no /api/push/batch (${probe.status})\n`);
        }
      }
      if (rooms > 0) {
        // History rooms only where they exist; elsewhere the same pushes would be plain ones.
        const kinds = [["room", PLAIN_PREFIX]];
        if (name === "socket-server") kinds.push(["history room", HISTORY_PREFIX]);
        for (const [kind, prefix] of kinds) {
          const r = await measure(target, o, lag, state, "/api/push", 0, prefix);
          roomRows.push({ target: `${name} ${kind}`, kind, server: name, round, ...r });
          process.stdout.write(
            `round ${round} ${name} ${kind}: ${r.reqPerSec.toFixed(0)} req/s, delivered ${r.delivered}/${r.sent}\n`,
          );
        }
      }
    },
  );
  lag.close();

  const columns = [
    COLUMNS.target,
    COLUMNS.round,
    { key: "reqPerSec", title: "req/s", digits: 0 },
    { key: "pushesPerSec", title: "pushes/s", digits: 0 },
    { key: "autocannon2xxPerSec", title: "autocannon 2xx/s", digits: 0 },
    { key: "httpP99Ms", title: "HTTP p99 ms", digits: 1 },
    COLUMNS.non2xx,
    { key: "errors", title: "errors", digits: 0 },
    { get: (r) => `${r.delivered}/${r.sent}`, title: "delivered/sent" },
    { key: "lost", title: "lost", digits: 0 },
    ...COLUMNS.delivery,
    COLUMNS.serverCores,
    { key: "serverCpuUsPerPush", title: "server CPU µs/push", digits: 0 },
    COLUMNS.loadgenCores,
    COLUMNS.lagP99WorstMs,
  ];
  const ratio = ratios(rows, "reqPerSec");
  const historyRatio = historyCost(roomRows);
  publish(
    "push",
    {
      settings: o,
      rows,
      batchRows,
      roomRows,
      ratios: { reqPerSec: ratio, historyVsPlainRoom: historyRatio },
    },
    "User pushes: POST /api/push to 1 random user",
    [
      markdownTable(columns, rows),
      describeRatios("req/s", ratio),
      batchRows.length
        ? `### POST /api/push/batch (${o.PUSH_BATCH_SIZE} pushes per request)\n\n${markdownTable(columns, batchRows)}`
        : "",
      roomRows.length
        ? `### Room pushes: plain rooms and history rooms (${o.PUSH_ROOMS} rooms of ${o.PUSH_USERS / o.PUSH_ROOMS} clients; req/s = room pushes/s)\n\n${markdownTable(columns, roomRows)}\n\n${describeHistoryCost(historyRatio)}`
        : "",
    ],
  );
  if (historyRatio) process.stdout.write(`${describeHistoryCost(historyRatio)}\n`);
}

/** socket-server's history-room req/s over its plain-room req/s, per round (the same server). */
function historyCost(roomRows) {
  const per = [];
  for (const h of roomRows.filter(
    (r) => r.server === "socket-server" && r.kind === "history room",
  )) {
    const p = roomRows.find(
      (r) => r.server === h.server && r.round === h.round && r.kind === "room",
    );
    if (p?.reqPerSec > 0) per.push(h.reqPerSec / p.reqPerSec);
  }
  if (per.length === 0) return undefined;
  return { perRound: per, mean: per.reduce((a, b) => a + b, 0) / per.length };
}

const describeHistoryCost = (h) =>
  h
    ? `history rooms vs plain rooms (socket-server, req/s): ${h.mean.toFixed(2)}x (rounds: ${h.perRound.map((x) => x.toFixed(2)).join(", ")}; the goal is at least 0.8x)`
    : "";

await runBench(main);
