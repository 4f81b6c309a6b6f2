import { COMMON, settings } from "./lib/knobs.mjs";
import { startLagListener } from "./lib/lag-listener.mjs";
import { checkOpenFiles } from "./lib/limits.mjs";
import { CLIENTS_PER_PROCESS, startLoadgens } from "./lib/loadgens.mjs";
import { loadMeter, rssKb } from "./lib/proc.mjs";
import { COLUMNS, describeRatios, markdownTable, publish, ratios } from "./lib/report.mjs";
import { runBench } from "./lib/run.mjs";
import { sleep } from "./lib/stats.mjs";
import { eachTargetRound } from "./lib/targets.mjs";
import { benchTokens } from "./lib/tokens.mjs";

/**
 * Idle memory: the resident memory of every process of a target (primary,
 * workers, their threads), summed from /proc, with 0 and then MEMORY_STEPS
 * registered websocket clients connected and idle → KB per connection over
 * the whole cluster. The sample is taken after MEMORY_SETTLE_MS of quiet.
 * The clients live in MEMORY_LOADGEN_PROCESSES child processes
 * (bench/lib/loadgens.mjs: one process cannot open 20k sockets here); this
 * process only measures. A target that cannot take a step's clients is
 * reported (how many it held, how the rest failed, whether it exited) and the
 * run goes on with the next target, then exits 1.
 */
const SPEC = {
  ...COMMON,
  MEMORY_STEPS: [[1000, 5000, 10000], "registered clients at each measurement (cumulative)"],
  MEMORY_SETTLE_MS: [4000, "quiet time before each sample"],
  MEMORY_CONCURRENCY: [200, "handshakes in flight while connecting"],
  MEMORY_ALG: ["ES256", "JWT algorithm of the clients"],
  MEMORY_LOADGEN_PROCESSES: [
    0,
    `load-generator processes holding the clients (0: one per ${CLIENTS_PER_PROCESS} of the largest step)`,
  ],
};

async function sample(target, settleMs) {
  await sleep(settleMs);
  const r = target.rss();
  return { totalKb: r.totalKb, processes: r.pids.length, perProcessKb: r.pids.map((p) => p.rssKb) };
}

async function main() {
  const o = settings("bench: idle memory per connection", SPEC);
  const max = Math.max(...o.MEMORY_STEPS);
  const loadgens = o.MEMORY_LOADGEN_PROCESSES || Math.ceil(max / CLIENTS_PER_PROCESS);
  process.stdout.write(
    `load generators: ${loadgens} process${loadgens > 1 ? "es" : ""}, up to ${Math.ceil(max / loadgens)} clients each\n\n`,
  );
  checkOpenFiles(Math.ceil(max / loadgens));
  const { keys, tokens } = await benchTokens(o.MEMORY_ALG, max);
  const rows = [];
  const lag = await startLagListener();

  await eachTargetRound(o, { keys, probePort: lag.port }, async (target, round, name, clients) => {
    const base = await sample(target, o.MEMORY_SETTLE_MS);
    const row = {
      target: name,
      round,
      baseMb: base.totalKb / 1024,
      processes: base.processes,
      basePerProcessKb: base.perProcessKb,
    };
    const fleets = await startLoadgens(loadgens);
    clients.push(fleets); // eachTargetRound terminates it: the children exit
    let have = 0;
    for (const step of o.MEMORY_STEPS) {
      const fleet = await fleets.open(target, tokens.slice(have, step), {
        concurrency: o.MEMORY_CONCURRENCY,
        firstUser: have,
        // A lost handshake (the docs recipe loses ~1 in 5,000) is retried
        // here: this bench is about memory; bench/connect.mjs counts losses.
        retries: 3,
      });
      row.retried = (row.retried ?? 0) + fleet.retried;
      if (fleet.completed !== step - have) {
        row.held = have + fleet.completed;
        row.failedAt = step;
        row.failures = fleet.failures;
        row.failureSamples = fleet.failureSamples;
        // The held figures so far were of a smaller step than their columns say.
        delete row.heldLagP99Ms;
        delete row.heldCores;
        delete row.heldPerProcessCores;
        row.exited = target.alive() ? undefined : (target.proc.exitCode ?? target.proc.signalCode);
        process.stderr.write(
          `round ${round} ${name}: held ${row.held} of ${step}; ${fleet.failed} attempts failed` +
            ` (${JSON.stringify(fleet.failures)}): ${fleet.failureSamples.join("; ")}` +
            `${row.exited === undefined ? "" : `; the target exited (${row.exited}):\n${target.output().slice(-2000)}`}\n`,
        );
        break;
      }
      have = step;
      row.held = have;
      const s = await sample(target, o.MEMORY_SETTLE_MS);
      // The serving processes' event-loop lag and CPU while they hold the
      // clients idle: a window after the settle, so none of the connecting.
      const meter = loadMeter(target, lag);
      await sleep(2_000);
      const held = meter.lag();
      row.heldLagP99Ms = held.worstP99Ms;
      const cpu = meter.stop().serverCpu;
      row.heldCores = cpu.totalCores;
      row.heldPerProcessCores = cpu.perPid.map((p) => p.cores);
      row[`kbPerConn${step}`] = (s.totalKb - base.totalKb) / step;
      row[`mb${step}`] = s.totalKb / 1024;
      row.perProcessKb = s.perProcessKb;
    }
    row.loadgenMb = (rssKb(process.pid) + fleets.rssKb()) / 1024;
    row.kbPerConn = row[`kbPerConn${max}`];
    rows.push(row);
    if (row.failedAt) return;
    const mb = (kbs) => kbs.map((kb) => (kb / 1024).toFixed(0)).join(" + ");
    process.stdout.write(
      `round ${round} ${name}: ${row.kbPerConn.toFixed(1)} KB per connection (0→${max}), base ${row.baseMb.toFixed(0)} MB` +
        ` (per process ${mb(row.basePerProcessKb)} MB; at ${max}: ${mb(row.perProcessKb)} MB)\n`,
    );
  });

  const columns = [
    COLUMNS.target,
    COLUMNS.round,
    { key: "processes", title: "processes", digits: 0 },
    { key: "baseMb", title: "RSS at 0 (MB)", digits: 0 },
    ...o.MEMORY_STEPS.map((s) => ({ key: `mb${s}`, title: `RSS at ${s} (MB)`, digits: 0 })),
    ...o.MEMORY_STEPS.map((s) => ({ key: `kbPerConn${s}`, title: `KB/conn 0→${s}`, digits: 1 })),
    { key: "heldLagP99Ms", title: `lag p99 holding ${max}, worst ms`, digits: 1 },
    { key: "heldCores", title: `CPU holding ${max} idle (cores)`, digits: 2 },
    { key: "retried", title: "handshakes retried", digits: 0 },
    { key: "held", title: "clients held", digits: 0 },
  ];
  lag.close();
  const ratio = ratios(rows, "kbPerConn", { higherIsBetter: false });
  publish(
    "memory",
    { settings: o, rows, ratios: { kbPerConn: ratio } },
    "Idle memory: RSS of all processes with registered websocket clients",
    [
      markdownTable(columns, rows),
      describeRatios(
        "KB per connection (baseline ÷ socket-server: >1 means socket-server uses less)",
        ratio,
      ),
    ],
  );
  if (rows.some((r) => r.failedAt)) {
    throw new Error(
      `not every target held ${max} clients: ${rows
        .filter((r) => r.failedAt)
        .map((r) => `${r.target} (round ${r.round}) held ${r.held} of ${r.failedAt}`)
        .join(", ")}`,
    );
  }
}

await runBench(main);
