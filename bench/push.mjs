import { openFleet } from "./lib/fleet.mjs";
import { COMMON, settings } from "./lib/knobs.mjs";
import { startLagListener } from "./lib/lag-listener.mjs";
import { loadMeter } from "./lib/proc.mjs";
import { pushLoad } from "./lib/push-load.mjs";
import { COLUMNS, describeRatios, markdownTable, publish, ratios } from "./lib/report.mjs";
import { runBench } from "./lib/run.mjs";
import { deliveryCounter, settle } from "./lib/stats.mjs";
import { apiPost, eachTargetRound } from "./lib/targets.mjs";
import { benchTokens } from "./lib/tokens.mjs";

/**
 * User pushes: autocannon on `POST /api/push` to random users among
 * PUSH_USERS registered websocket clients → pushes per second (counted as
 * deliveries at the clients, see measure()), HTTP latency, delivered vs sent,
 * delivery latency (send time in the payload). Then the same through `/api/push/batch` where the target has
 * it. Targets run interleaved, PUSH rounds each.
 */
const SPEC = {
  ...COMMON,
  PUSH_USERS: [1000, "registered websocket clients, one per user"],
  PUSH_CONNECTIONS: [32, "autocannon HTTP keep-alive connections"],
  PUSH_PIPELINING: [1, "requests in flight per connection"],
  PUSH_DURATION_S: [10, "measured seconds per target and round"],
  PUSH_WARMUP_S: [2, "unmeasured seconds of the same load first"],
  PUSH_SETTLE_MS: [3000, "longest wait for the last deliveries after the load stops"],
  PUSH_BATCH_SIZE: [10, "pushes per /api/push/batch request (0: skip the batch run)"],
  PUSH_ALG: ["ES256", "JWT algorithm of the clients (ES256 or HS256)"],
};

/** Measures one target: warm-up, then the measured run, then waits for stragglers. */
async function measure(target, o, lag, state, path, batch) {
  const cannon = (duration) =>
    pushLoad(target, {
      users: o.PUSH_USERS,
      connections: o.PUSH_CONNECTIONS,
      pipelining: o.PUSH_PIPELINING,
      duration,
      path,
      batch,
    });
  const delivered = () => state.delivered;
  await cannon(o.PUSH_WARMUP_S);
  await settle(delivered, o.PUSH_SETTLE_MS);
  state.reset();
  const meter = loadMeter(target, lag);
  const res = await cannon(o.PUSH_DURATION_S);
  const { serverCpu, loadgenCores } = meter.stop();
  const lagWin = meter.lag();
  await settle(delivered, o.PUSH_SETTLE_MS);
  const per = batch || 1;
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
    pushesPerSec: state.delivered / o.PUSH_DURATION_S,
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

  await eachTargetRound(o, { keys, probePort: lag.port }, async (target, round, name, clients) => {
    const state = deliveryCounter("bench:push");
    // A lost handshake (the docs recipe loses some) is retried: this bench is about pushes.
    const fleet = await openFleet(target, tokens, {
      onEvent: state.onEvent,
      concurrency: 100,
      retries: 3,
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
  });
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
  publish(
    "push",
    { settings: o, rows, batchRows, ratios: { reqPerSec: ratio } },
    "User pushes: POST /api/push to 1 random user",
    [
      markdownTable(columns, rows),
      describeRatios("req/s", ratio),
      batchRows.length
        ? `### POST /api/push/batch (${o.PUSH_BATCH_SIZE} pushes per request)\n\n${markdownTable(columns, batchRows)}`
        : "",
    ],
  );
}

await runBench(main);
