import { openFleet } from "./lib/fleet.mjs";
import { COMMON, settings } from "./lib/knobs.mjs";
import { startLagListener } from "./lib/lag-listener.mjs";
import { checkOpenFiles } from "./lib/limits.mjs";
import { loadMeter } from "./lib/proc.mjs";
import { COLUMNS, describeRatios, markdownTable, publish, ratios } from "./lib/report.mjs";
import { runBench } from "./lib/run.mjs";
import { sleep } from "./lib/stats.mjs";
import { eachTargetRound, withVariants } from "./lib/targets.mjs";
import { benchTokens } from "./lib/tokens.mjs";

/**
 * Connect storm: CONNECT_CLIENTS websocket clients with ES256 tokens, at most
 * CONNECT_CONCURRENCY handshakes in flight, each connecting and registering
 * → completed clients per second, handshake (to the namespace CONNECT) and
 * ready (CONNECT + register ack) latency, failed or hung handshakes, and the
 * servers' event-loop delay during the storm (bench/lib/lag-probe.mjs, the
 * same probe in every target). socket-server runs once per
 * CONNECT_AUTH_MODES (AUTH_VERIFY_MODE); the baselines verify inline.
 */
const SPEC = {
  ...COMMON,
  CONNECT_CLIENTS: [10000, "clients per storm"],
  CONNECT_CONCURRENCY: [256, "handshakes in flight"],
  CONNECT_TIMEOUT_MS: [20000, "a handshake or register taking longer counts as hung"],
  CONNECT_AUTH_MODES: [
    ["pool", "inline"],
    "socket-server AUTH_VERIFY_MODE values to run; `inline+K=V+K2=V2` adds settings (an A/B in one run)",
  ],
  CONNECT_ALG: ["ES256", "JWT algorithm (ES256 or HS256)"],
};

async function main() {
  const o = settings("bench: connect storm", SPEC);
  checkOpenFiles(o.CONNECT_CLIENTS);
  const { keys, tokens } = await benchTokens(o.CONNECT_ALG, o.CONNECT_CLIENTS);
  const lag = await startLagListener();
  // socket-server appears once per auth mode, as its own column of the round.
  const variants = withVariants(
    o.BENCH_TARGETS,
    o.CONNECT_AUTH_MODES.map((m) => {
      const [mode, ...extra] = m.split("+");
      return {
        label: `socket-server (${m})`,
        env: { AUTH_VERIFY_MODE: mode, ...Object.fromEntries(extra.map((kv) => kv.split("="))) },
      };
    }),
  );
  const rows = [];

  await eachTargetRound(
    o,
    { keys, probePort: lag.port, targets: variants },
    async (target, round, v, clients) => {
      await sleep(500);
      const meter = loadMeter(target, lag);
      const fleet = await openFleet(target, tokens, {
        concurrency: o.CONNECT_CONCURRENCY,
        timeoutMs: o.CONNECT_TIMEOUT_MS,
      });
      const { serverCpu, loadgenCores } = meter.stop();
      clients.push(...fleet.clients);
      // The probe reports every 250 ms: wait for the window that holds the end.
      await sleep(400);
      const lagWin = meter.lag();
      const row = {
        target: v.label,
        round,
        clients: o.CONNECT_CLIENTS,
        perSecond: fleet.perSecond,
        seconds: fleet.seconds,
        handshakeP50Ms: fleet.handshakeMs.p50,
        handshakeP99Ms: fleet.handshakeMs.p99,
        readyP99Ms: fleet.readyMs.p99,
        registerAckP99Ms: fleet.registerAckMs.p99,
        failed: fleet.failed,
        hung: fleet.failures.timeout,
        failures: fleet.failures,
        failureSamples: fleet.failureSamples,
        lagP99WorstMs: lagWin.worstP99Ms,
        lagP99MedianMs: lagWin.medianP99Ms,
        lagMaxMs: lagWin.maxMs,
        serverCores: serverCpu.totalCores,
        // The target's root process first (primary, or the single process).
        serverCoresPerProcess: serverCpu.perPid.map((p) => Number(p.cores.toFixed(3))),
        serverCpuMsPerClient: (serverCpu.totalCores * fleet.seconds * 1000) / fleet.completed,
        loadgenCores,
      };
      rows.push(row);
      process.stdout.write(
        `round ${round} ${v.label}: ${row.perSecond.toFixed(0)}/s, failed ${row.failed}, ` +
          `handshake p99 ${row.handshakeP99Ms.toFixed(0)} ms, lag p99 worst ${row.lagP99WorstMs.toFixed(1)} ms\n`,
      );
      // What went wrong, from both sides: the clients' first failures and
      // what the target logged (socket-server logs warnings in the benches).
      if (row.failed) {
        const said = target.output().trim().split("\n").slice(-10).join("\n    ");
        process.stdout.write(
          `  failures: ${fleet.failureSamples.join("; ")}\n  target's last log lines:\n    ${said || "(none)"}\n`,
        );
      }
    },
  );
  lag.close();

  const columns = [
    COLUMNS.target,
    COLUMNS.round,
    { key: "perSecond", title: "connected+registered/s", digits: 0 },
    { key: "handshakeP50Ms", title: "handshake p50 ms", digits: 0 },
    { key: "handshakeP99Ms", title: "handshake p99 ms", digits: 0 },
    { key: "readyP99Ms", title: "+register p99 ms", digits: 0 },
    { key: "registerAckP99Ms", title: "register ack p99 ms", digits: 0 },
    { get: (r) => `${r.failed} (${r.hung} hung)`, title: `failed of ${o.CONNECT_CLIENTS}` },
    { key: "lagP99MedianMs", title: "lag p99 median ms", digits: 1 },
    { key: "lagP99WorstMs", title: "lag p99 worst ms", digits: 1 },
    COLUMNS.serverCores,
    { key: "serverCpuMsPerClient", title: "server CPU ms/client", digits: 2 },
    COLUMNS.loadgenCores,
  ];
  const sections = [markdownTable(columns, rows)];
  const allRatios = {};
  const cpuRatios = {};
  for (const m of o.CONNECT_AUTH_MODES) {
    const subject = `socket-server (${m})`;
    const r = ratios(rows, "perSecond", { subject });
    allRatios[m] = r;
    sections.push(describeRatios(`clients/s, ${subject}`, r));
    // Server CPU per client, socket-server ÷ baseline (higher is worse).
    const cpu = ratios(rows, "serverCpuMsPerClient", { subject, higherIsBetter: true });
    cpuRatios[m] = cpu;
    sections.push(describeRatios(`server CPU ms per client, ${subject} (lower is better)`, cpu));
  }
  publish(
    "connect",
    { settings: o, rows, ratios: allRatios, cpuRatios },
    `Connect storm: ${o.CONNECT_CLIENTS} clients, ${o.CONNECT_ALG} tokens`,
    sections,
  );
}

await runBench(main);
