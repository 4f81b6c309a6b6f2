import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { closeFleet, openFleet } from "./lib/fleet.mjs";
import { startLagListener } from "./lib/lag-listener.mjs";
import { COMMON, knobs, printKnobs } from "./lib/knobs.mjs";
import { selfCpuMeter } from "./lib/proc.mjs";
import { describeRatios, markdownTable, printReport, ratios, writeResult } from "./lib/report.mjs";
import { nowMs, Recorder, sleep } from "./lib/stats.mjs";
import { apiPost, roundOrder, startTarget } from "./lib/targets.mjs";
import { benchApiKey, benchKeys, signMany } from "./lib/tokens.mjs";

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

const SETUP = fileURLToPath(new URL("./lib/push-request.cjs", import.meta.url));

function cannon(target, o, path, batch) {
  process.env.BENCH_PUSH_USERS = String(o.PUSH_USERS);
  process.env.BENCH_PUSH_BATCH_SIZE = String(batch);
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: target.apiUrl,
        connections: o.connections ?? o.PUSH_CONNECTIONS,
        pipelining: o.PUSH_PIPELINING,
        duration: o.duration,
        workers: 1,
        requests: [
          {
            method: "POST",
            path,
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

/** Measures one target: warm-up, then the measured run, then waits for stragglers. */
async function measure(target, o, lag, state, path, batch) {
  await cannon(target, { ...o, duration: o.PUSH_WARMUP_S }, path, batch);
  await settle(state, o.PUSH_SETTLE_MS);
  state.delivered = 0;
  state.latency = new Recorder();
  const cpu = target.cpu();
  const self = selfCpuMeter();
  const from = lag.now();
  cpu.start();
  self.start();
  const res = await cannon(target, { ...o, duration: o.PUSH_DURATION_S }, path, batch);
  const serverCpu = cpu.stop();
  const loadgenCores = self.stop();
  const lagWin = lag.between(from, lag.now(), target.serverRole);
  await settle(state, o.PUSH_SETTLE_MS);
  const per = batch || 1;
  const lat = state.latency.summary();
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
    deliveryP50Ms: lat.p50,
    deliveryP99Ms: lat.p99,
    deliveryMaxMs: lat.max,
    serverCores: serverCpu.totalCores,
    serverCoresPerProcess: serverCpu.perPid.map((p) => Number(p.cores.toFixed(2))),
    serverCpuUsPerPush: (serverCpu.totalCores * 1e6) / (state.delivered / o.PUSH_DURATION_S),
    loadgenCores,
    lagP99WorstMs: lagWin.worstP99Ms,
  };
}

async function settle(state, maxMs) {
  const until = performance.now() + maxMs;
  let last = -1;
  while (performance.now() < until && state.delivered !== last) {
    last = state.delivered;
    await sleep(300);
  }
}

async function main() {
  const o = knobs(SPEC);
  printKnobs("bench: user pushes (POST /api/push)", SPEC, o);
  const keys = benchKeys(o.PUSH_ALG);
  const tokens = await signMany(keys, o.PUSH_USERS);
  const lag = await startLagListener();
  const rows = [];
  const batchRows = [];

  for (let round = 0; round < o.BENCH_ROUNDS; round++) {
    for (const name of roundOrder(o.BENCH_TARGETS, round)) {
      const target = await startTarget(name, {
        keys,
        apiKey: benchApiKey(),
        workers: o.BENCH_WORKERS,
        probePort: lag.port,
      });
      const state = { delivered: 0, latency: new Recorder() };
      const onEvent = (event, payload) => {
        if (event !== "bench:push") return;
        state.delivered += 1;
        state.latency.add(nowMs() - payload.t);
      };
      try {
        // A lost handshake (the docs recipe loses some) is retried: this bench is about pushes.
        const fleet = await openFleet(target, tokens, { onEvent, concurrency: 100, retries: 3 });
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
        await closeFleet(fleet.clients);
      } finally {
        await target.stop();
      }
    }
  }
  lag.close();

  const columns = [
    { key: "target", title: "target" },
    { key: "round", title: "round", digits: 0 },
    { key: "reqPerSec", title: "req/s", digits: 0 },
    { key: "pushesPerSec", title: "pushes/s", digits: 0 },
    { key: "autocannon2xxPerSec", title: "autocannon 2xx/s", digits: 0 },
    { key: "httpP99Ms", title: "HTTP p99 ms", digits: 1 },
    { key: "non2xx", title: "non-2xx", digits: 0 },
    { key: "errors", title: "errors", digits: 0 },
    { get: (r) => `${r.delivered}/${r.sent}`, title: "delivered/sent" },
    { key: "lost", title: "lost", digits: 0 },
    { key: "deliveryP50Ms", title: "delivery p50 ms", digits: 1 },
    { key: "deliveryP99Ms", title: "delivery p99 ms", digits: 1 },
    { key: "deliveryMaxMs", title: "delivery max ms", digits: 1 },
    { key: "serverCores", title: "server CPU (cores)", digits: 2 },
    { key: "serverCpuUsPerPush", title: "server CPU µs/push", digits: 0 },
    { key: "loadgenCores", title: "loadgen CPU (cores)", digits: 2 },
    { key: "lagP99WorstMs", title: "worst lag p99 ms", digits: 1 },
  ];
  const ratio = ratios(rows, "reqPerSec");
  const { machine, file } = writeResult("push", {
    settings: o,
    rows,
    batchRows,
    ratios: { reqPerSec: ratio },
  });
  printReport("User pushes: POST /api/push to 1 random user", machine, [
    markdownTable(columns, rows),
    describeRatios("req/s", ratio),
    batchRows.length
      ? `### POST /api/push/batch (${o.PUSH_BATCH_SIZE} pushes per request)\n\n${markdownTable(columns, batchRows)}`
      : "",
    `result: ${file}`,
  ]);
}

await main();
