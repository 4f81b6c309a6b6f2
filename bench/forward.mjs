import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { closeFleet, openFleet } from "./lib/fleet.mjs";
import { settings } from "./lib/knobs.mjs";
import { startLagListener } from "./lib/lag-listener.mjs";
import { cpuMeter, loadMeter } from "./lib/proc.mjs";
import { COLUMNS, markdownTable, publish } from "./lib/report.mjs";
import { runBench } from "./lib/run.mjs";
import { Recorder } from "./lib/stats.mjs";
import { apiGet, startTarget } from "./lib/targets.mjs";
import { benchApiKey, benchTokens } from "./lib/tokens.mjs";

/**
 * Client events forwarded to a local backend (bench/forward-backend.mjs, its
 * own process) through socket-server: FWD_CLIENTS websocket clients each keep
 * FWD_INFLIGHT events outstanding (closed loop: the next emit goes out when
 * the ack comes back). Phases, each FWD_DURATION_S after FWD_WARMUP_S:
 *
 *   gateway-only  `room:join` acks, never forwarded: the floor of an ack round trip;
 *   forward       events forwarded over HTTP (signed) and answered 200 JSON;
 *   breaker-open  the backend answers 500; once every worker's breaker is
 *                 open, acks come back BACKEND_UNAVAILABLE without a request.
 *
 * Run: npm run build && node bench/forward.mjs
 */
const SPEC = {
  BENCH_WORKERS: [2, "socket-server worker processes"],
  FWD_CLIENTS: [200, "registered websocket clients"],
  FWD_INFLIGHT: [4, "events outstanding per client (closed loop)"],
  FWD_DURATION_S: [10, "measured seconds per phase"],
  FWD_WARMUP_S: [2, "unmeasured seconds before each phase"],
  FWD_PAYLOAD_BYTES: [200, "size of the string in each event's payload"],
  FWD_SIGNED: ["yes", "set BACKEND_SIGNING_SECRET (the backend verifies every signature)"],
  FWD_MAX_CONCURRENCY: ["", "BACKEND_MAX_CONCURRENCY for the server (empty: its default)"],
  FWD_PROFILE_DIR: [
    "",
    "write V8 CPU profiles of the server's processes during the forward phase here",
  ],
};

const BACKEND = fileURLToPath(new URL("./forward-backend.mjs", import.meta.url));
const PROFILER = new URL("./cpu-profile.mjs", import.meta.url).href;

async function startBackend(secret) {
  const proc = spawn(process.execPath, [BACKEND], {
    env: { PATH: process.env.PATH, ...(secret ? { BACKEND_SIGNING_SECRET: secret } : {}) },
    stdio: ["ignore", "pipe", "inherit"],
    detached: true,
  });
  process.once("exit", () => {
    try {
      process.kill(-proc.pid, "SIGKILL");
    } catch {}
  });
  const port = await new Promise((resolve, reject) => {
    let out = "";
    proc.stdout.on("data", (c) => {
      out += c;
      const m = /\{"port":(\d+)\}/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once("exit", (code) => reject(new Error(`backend exited ${code}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    pid: proc.pid,
    async mode(m) {
      const res = await fetch(`${url}/__mode`, { method: "POST", body: m });
      return res.json();
    },
    stop() {
      proc.kill("SIGTERM");
    },
  };
}

/** Closed loop on every client for `seconds`; returns ack latencies and codes. */
async function loop(clients, o, seconds, makeEmit) {
  const latency = new Recorder();
  const codes = {};
  const end = performance.now() + seconds * 1000;
  const lane = async (c) => {
    while (performance.now() < end && c.connected) {
      const t0 = performance.now();
      let key;
      try {
        const ack = await makeEmit(c);
        key = ack?.ok ? "ok" : (ack?.error?.code ?? "no-ack");
      } catch {
        key = "lost";
      }
      latency.add(performance.now() - t0);
      codes[key] = (codes[key] ?? 0) + 1;
    }
  };
  const started = performance.now();
  await Promise.all(clients.flatMap((c) => Array.from({ length: o.FWD_INFLIGHT }, () => lane(c))));
  return { latency: latency.summary(), codes, seconds: (performance.now() - started) / 1000 };
}

async function phase(name, target, backend, lag, clients, o, makeEmit, profile = false) {
  await loop(clients, o, o.FWD_WARMUP_S, makeEmit);
  const signalServer = () => {
    for (const pid of target.pids()) {
      try {
        process.kill(pid, "SIGWINCH");
      } catch {}
    }
  };
  if (profile) signalServer();
  const meter = loadMeter(target, lag);
  const back = cpuMeter(backend.pid);
  back.start();
  const r = await loop(clients, o, o.FWD_DURATION_S, makeEmit);
  if (profile) signalServer();
  const { serverCpu, loadgenCores } = meter.stop();
  const row = {
    phase: name,
    acksPerSec: r.latency.count / r.seconds,
    p50Ms: r.latency.p50,
    p90Ms: r.latency.p90,
    p99Ms: r.latency.p99,
    maxMs: r.latency.max,
    codes: Object.entries(r.codes)
      .map(([k, v]) => `${k} ${v}`)
      .join(", "),
    serverCores: serverCpu.totalCores,
    backendCores: back.stop().totalCores,
    loadgenCores,
    lagP99WorstMs: meter.lag().worstP99Ms,
  };
  process.stdout.write(
    `${name}: ${row.acksPerSec.toFixed(0)} acks/s, p50 ${row.p50Ms.toFixed(2)} ms, p99 ${row.p99Ms.toFixed(2)} ms (${row.codes})\n`,
  );
  return row;
}

async function main() {
  const o = settings("bench: client events forwarded to the backend", SPEC);
  const secret = o.FWD_SIGNED === "yes" ? randomBytes(24).toString("base64url") : undefined;
  const backend = await startBackend(secret);
  const { keys, tokens } = await benchTokens("HS256", o.FWD_CLIENTS);
  const lag = await startLagListener();
  const env = {
    BACKEND_URL: backend.url,
    ...(secret ? { BACKEND_SIGNING_SECRET: secret } : {}),
    // One load generator sends far more than a person: lift the per-socket event rate.
    RATE_EVENTS_PER_SECOND: "1000000",
    RATE_EVENTS_BURST: "1000000",
    ...(o.FWD_MAX_CONCURRENCY ? { BACKEND_MAX_CONCURRENCY: o.FWD_MAX_CONCURRENCY } : {}),
    // Replaces the lag probe's NODE_OPTIONS: a profiled run reports no lag.
    ...(o.FWD_PROFILE_DIR
      ? { NODE_OPTIONS: `--import=${PROFILER}`, BENCH_CPU_PROFILE_DIR: o.FWD_PROFILE_DIR }
      : {}),
  };
  process.stdout.write(
    `server env for this bench: ${JSON.stringify({ ...env, BACKEND_SIGNING_SECRET: secret ? "(random)" : undefined })}\n\n`,
  );
  const target = await startTarget("socket-server", {
    keys,
    apiKey: benchApiKey(),
    workers: o.BENCH_WORKERS,
    probePort: lag.port,
    env,
  });
  const rows = [];
  try {
    const fleet = await openFleet(target, tokens, { concurrency: 100, room: "bench:fwd" });
    if (fleet.completed !== o.FWD_CLIENTS) {
      throw new Error(`only ${fleet.completed} of ${o.FWD_CLIENTS} clients registered`);
    }
    const payload = { text: "x".repeat(o.FWD_PAYLOAD_BYTES), n: 1 };
    rows.push(
      await phase("gateway-only (room:join)", target, backend, lag, fleet.clients, o, (c) =>
        c.emitAck("room:join", { room: "bench:fwd" }),
      ),
    );
    rows.push(
      await phase(
        "forward (200 JSON)",
        target,
        backend,
        lag,
        fleet.clients,
        o,
        (c) => c.emitAck("bench:event", payload),
        Boolean(o.FWD_PROFILE_DIR),
      ),
    );
    const before = await backend.mode("fail");
    rows.push(
      await phase("breaker open (backend 500)", target, backend, lag, fleet.clients, o, (c) =>
        c.emitAck("bench:event", payload),
      ),
    );
    const after = await backend.mode("ok");
    const status = await apiGet(target, "/api/status");
    process.stdout.write(
      `backend: ${before.served} requests served before the 500 phase, ${after.served - before.served} during it (warm-up included), ${after.badSignatures} bad signatures, ${after.connections} connections opened in all\n` +
        `breakers at the end: ${status.workers.map((w) => w.forwarding?.breaker).join(", ")}\n`,
    );
    rows.at(-1).backendRequestsDuring = after.served - before.served;
    // The server's own account of breaker changes (warn lines), to tell why it opened.
    const breakerLines = target
      .output()
      .split("\n")
      .filter((l) => l.includes("circuit breaker"));
    process.stdout.write(`server log, breaker lines (${breakerLines.length}):\n`);
    for (const l of breakerLines.slice(0, 6)) process.stdout.write(`  ${l.slice(0, 300)}\n`);
    await closeFleet(fleet.clients);
  } finally {
    await target.stop();
    backend.stop();
    lag.close();
  }

  const columns = [
    { key: "phase", title: "phase" },
    { key: "acksPerSec", title: "acks/s", digits: 0 },
    { key: "p50Ms", title: "p50 ms", digits: 2 },
    { key: "p90Ms", title: "p90 ms", digits: 2 },
    { key: "p99Ms", title: "p99 ms", digits: 2 },
    { key: "maxMs", title: "max ms", digits: 1 },
    { key: "codes", title: "acks" },
    { key: "serverCores", title: "server CPU", digits: 2 },
    { key: "backendCores", title: "backend CPU", digits: 2 },
    { key: "loadgenCores", title: "loadgen CPU", digits: 2 },
    COLUMNS.lagP99WorstMs,
  ];
  publish("forward", { settings: o, rows }, "Forwarding client events to a local backend", [
    markdownTable(columns, rows),
  ]);
}

await runBench(main);
