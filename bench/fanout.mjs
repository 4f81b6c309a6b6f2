import { alive, openFleet } from "./lib/fleet.mjs";
import { COMMON, settings } from "./lib/knobs.mjs";
import { startLagListener } from "./lib/lag-listener.mjs";
import { checkOpenFiles } from "./lib/limits.mjs";
import { loadMeter } from "./lib/proc.mjs";
import { COLUMNS, describeRatios, markdownTable, publish, ratios } from "./lib/report.mjs";
import { runBench } from "./lib/run.mjs";
import { deliveryCounter, nowMs, sleep } from "./lib/stats.mjs";
import { apiPost, eachTargetRound, withVariants } from "./lib/targets.mjs";
import { benchTokens } from "./lib/tokens.mjs";

/**
 * Fan-out: FANOUT_CLIENTS clients registered and in one room; the bench
 * pushes to the room through `POST /api/push` at each rate of FANOUT_RATES
 * for FANOUT_DURATION_S → delivered/s (deliveries ÷ time from the first push
 * to the last delivery), latency from the push call to each delivery
 * (p50/p99/max), and missed deliveries (accepted pushes × clients −
 * deliveries). A client the server disconnects during the run counts too.
 *
 * socket-server refuses pushes (503 OVERLOADED) while its event loop lags
 * more than MAX_PUSH_LAG_MS; the baselines take everything and fall
 * behind. So it runs as shipped, then once per FANOUT_SOCKET_SERVER_LAG_MS
 * value (by default a limit so high that it sheds nothing, like the
 * baselines). Refused pushes are counted, and not expected at the clients.
 */
const SPEC = {
  ...COMMON,
  FANOUT_CLIENTS: [10000, "clients in the room"],
  FANOUT_RATES: [[1, 5, 10], "room pushes per second, one run each"],
  FANOUT_DURATION_S: [10, "seconds of pushes per rate"],
  FANOUT_SETTLE_MS: [5000, "longest wait for the last deliveries after the last push"],
  FANOUT_PAYLOAD_BYTES: [64, "padding in each pushed payload"],
  FANOUT_CONCURRENCY: [200, "handshakes in flight while connecting the clients"],
  FANOUT_ALG: ["ES256", "JWT algorithm of the clients"],
  FANOUT_SOCKET_SERVER_LAG_MS: [
    [60000],
    "more socket-server runs, one per MAX_EVENT_LOOP_LAG_MS value (besides the one as shipped; none: no more)",
  ],
};

const ROOM = "bench:all";

async function runRate(target, o, state, rate, lag) {
  state.reset(1 << 20);
  const pad = "x".repeat(o.FANOUT_PAYLOAD_BYTES);
  const pushes = Math.max(1, Math.round(rate * o.FANOUT_DURATION_S));
  const meter = loadMeter(target, lag);
  const t0 = performance.now();
  let accepted = 0;
  let refused = 0;
  const inFlight = [];
  for (let i = 0; i < pushes; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    inFlight.push(
      apiPost(target, "/api/push", {
        room: ROOM,
        event: "bench:fan",
        payload: { t: nowMs(), seq: i, pad },
      }).then(
        (r) => (r.status >= 200 && r.status < 300 ? accepted++ : refused++),
        () => refused++,
      ),
    );
  }
  await Promise.all(inFlight);
  const sendEnd = performance.now();
  // Wait until every accepted delivery arrived, or nothing new for a while.
  const expected = () => accepted * state.clients;
  const until = sendEnd + o.FANOUT_SETTLE_MS;
  let last = -1;
  let quietSince = performance.now();
  while (performance.now() < until && state.delivered < expected()) {
    if (state.delivered !== last) {
      last = state.delivered;
      quietSince = performance.now();
    } else if (performance.now() - quietSince > 1500) {
      break;
    }
    await sleep(100);
  }
  const { serverCpu, loadgenCores } = meter.stop();
  const lagWin = meter.lag();
  const span = ((state.lastAt || performance.now()) - t0) / 1000;
  const lat = state.latency.summary();
  return {
    rate,
    pushes,
    accepted,
    refused,
    expected: expected(),
    delivered: state.delivered,
    missed: expected() - state.delivered,
    /** From the first push call to the last answer: longer than the nominal run means the pushes went out late. */
    sendSeconds: (sendEnd - t0) / 1000,
    deliveredPerSec: state.delivered / span,
    p50Ms: lat.p50,
    p99Ms: lat.p99,
    maxMs: lat.max,
    clientsAlive: alive(state.fleet),
    serverCores: serverCpu.totalCores,
    serverCoresPerProcess: serverCpu.perPid.map((p) => Number(p.cores.toFixed(2))),
    loadgenCores,
    lagP99WorstMs: lagWin.worstP99Ms,
  };
}

async function main() {
  const o = settings("bench: fan-out to one room", SPEC);
  checkOpenFiles(o.FANOUT_CLIENTS);
  const { keys, tokens } = await benchTokens(o.FANOUT_ALG, o.FANOUT_CLIENTS);
  const lag = await startLagListener();
  const rows = [];

  const variants = withVariants(o.BENCH_TARGETS, [
    { label: "socket-server" },
    ...o.FANOUT_SOCKET_SERVER_LAG_MS.map((ms) => ({
      label: `socket-server (lag limits ${ms} ms)`,
      env: { MAX_EVENT_LOOP_LAG_MS: String(ms), MAX_PUSH_LAG_MS: String(ms) },
    })),
  ]);
  const run = async (target, round, { label: name }, clients) => {
    const state = Object.assign(deliveryCounter("bench:fan"), { clients: 0, fleet: [] });
    const fleet = await openFleet(target, tokens, {
      onEvent: state.onEvent,
      room: ROOM,
      concurrency: o.FANOUT_CONCURRENCY,
      // A lost handshake is retried: this bench is about delivery.
      retries: 3,
    });
    clients.push(...fleet.clients);
    state.clients = fleet.completed;
    state.fleet = fleet.clients;
    if (fleet.completed < o.FANOUT_CLIENTS) {
      throw new Error(`${name}: only ${fleet.completed} of ${o.FANOUT_CLIENTS} clients joined`);
    }
    await sleep(1000);
    for (const rate of o.FANOUT_RATES) {
      const r = await runRate(target, o, state, rate, lag);
      rows.push({ target: name, round, clients: state.clients, ...r });
      process.stdout.write(
        `round ${round} ${name} ${rate}/s: ${r.deliveredPerSec.toFixed(0)} delivered/s, ` +
          `refused ${r.refused} of ${r.pushes}, missed ${r.missed}, p99 ${r.p99Ms.toFixed(0)} ms, ` +
          `pushes sent and answered in ${r.sendSeconds.toFixed(1)} s\n`,
      );
      // Refusals or dropped clients: what the target said about it.
      if (r.refused > 0 || r.clientsAlive < state.clients) {
        const said = target.output().trim().split("\n").slice(-8).join("\n    ");
        process.stdout.write(`  target's last log lines:\n    ${said || "(none)"}\n`);
      }
      await sleep(1000);
    }
  };
  await eachTargetRound(o, { keys, probePort: lag.port, targets: variants }, run);
  lag.close();

  const columns = [
    COLUMNS.target,
    COLUMNS.round,
    { key: "rate", title: "pushes/s", digits: 0 },
    { key: "deliveredPerSec", title: "delivered/s", digits: 0 },
    { key: "p50Ms", title: "p50 ms", digits: 0 },
    { key: "p99Ms", title: "p99 ms", digits: 0 },
    { key: "maxMs", title: "max ms", digits: 0 },
    { key: "refused", title: "refused (503)", digits: 0 },
    { key: "missed", title: "missed", digits: 0 },
    { key: "clientsAlive", title: "clients still connected", digits: 0 },
    COLUMNS.serverCores,
    COLUMNS.loadgenCores,
    { ...COLUMNS.lagP99WorstMs, digits: 0 },
  ];
  const sections = [markdownTable(columns, rows)];
  const allRatios = {};
  for (const rate of o.FANOUT_RATES) {
    const atRate = rows.filter((r) => r.rate === rate);
    const perVariant = {};
    for (const { label: subject } of variants.filter((v) => v.target === "socket-server")) {
      perVariant[subject] = {
        deliveredPerSec: ratios(atRate, "deliveredPerSec", { subject }),
        p99: ratios(atRate, "p99Ms", { higherIsBetter: false, subject }),
      };
      sections.push(
        describeRatios(`${rate}/s: delivered/s, ${subject}`, perVariant[subject].deliveredPerSec),
      );
      sections.push(
        describeRatios(`${rate}/s: p99 (baseline ÷ ${subject})`, perVariant[subject].p99),
      );
    }
    // The default's ratios at the top level (bench/summary.mjs reads them).
    allRatios[rate] = { ...(perVariant["socket-server"] ?? {}), variants: perVariant };
  }
  publish(
    "fanout",
    { settings: o, rows, ratios: allRatios },
    `Fan-out: ${o.FANOUT_CLIENTS} clients in one room`,
    sections,
  );
}

await runBench(main);
