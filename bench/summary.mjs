import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fmt, RESULTS_DIR } from "./lib/report.mjs";
import { median } from "./lib/stats.mjs";

/**
 * `npm run bench:summary`: the targets of bench/RESULTS.md against the
 * latest result of each bench (bench/results/*-latest.json), as one markdown
 * table with medians over the rounds and the ratios computed within rounds.
 */

function load(bench) {
  try {
    return JSON.parse(readFileSync(join(RESULTS_DIR, `${bench}-latest.json`), "utf8"));
  } catch {
    return undefined;
  }
}

const med = (rows, target, key) =>
  median(rows.filter((r) => r.target === target).map((r) => r[key]));
const ratio = (r) => (r ? `${fmt(r.median, 2)}× (${fmt(r.min, 2)}–${fmt(r.max, 2)})` : "–");

const lines = [];
const add = (figure, target, measured, met) =>
  lines.push(
    `| ${figure} | ${target} | ${measured} | ${met === undefined ? "–" : met ? "yes" : "no"} |`,
  );

/** bench/baselines/bare-ws.mjs has no target ("close to" it): its ratio is shown as it is. */
const floor = (figure, r) => r && add(figure, "(the floor: no target)", ratio(r));

const memory = load("memory");
if (memory) {
  const kb = med(memory.rows, "socket-server", "kbPerConn");
  const single = med(memory.rows, "single", "kbPerConn");
  const shown = `${fmt(kb, 1)} KB (single ${fmt(single, 1)}, docs cluster ${fmt(med(memory.rows, "docs-cluster", "kbPerConn"), 1)})`;
  // kbPerConn is the largest step's figure (bench/memory.mjs).
  const steps = memory.settings?.MEMORY_STEPS ?? [];
  const span = `0→${steps.length ? Math.max(...steps).toLocaleString("en-US") : "?"}`;
  add(`idle memory, all processes, ${span}`, "≤ the single process", shown, kb <= single);
  add(`idle memory, all processes, ${span}`, "≤ 10 KB per connection", shown, kb <= 10);
  const bare = med(memory.rows, "bare-ws", "kbPerConn");
  if (Number.isFinite(bare)) {
    add("idle memory, bare ws", "(the floor: no target)", `${fmt(bare, 1)} KB per connection`);
  }
}
const push = load("push");
if (push) {
  const r = push.ratios?.reqPerSec ?? {};
  const ss = push.rows.filter((x) => x.target === "socket-server");
  const lost = ss.reduce((n, x) => n + Math.max(0, x.lost), 0);
  const p99 = median(ss.map((x) => x.deliveryP99Ms));
  add("POST /api/push req/s vs single", "≥ 2×", ratio(r.single), r.single?.median >= 2);
  add(
    "POST /api/push req/s vs docs cluster",
    "≥ 5×",
    ratio(r["docs-cluster"]),
    r["docs-cluster"]?.median >= 5,
  );
  floor("POST /api/push req/s vs bare ws", r["bare-ws"]);
  add("pushes lost (socket-server)", "0", String(lost), lost === 0);
  add("push delivery p99 (socket-server)", "< 50 ms", `${fmt(p99, 1)} ms`, p99 < 50);
  if (push.batchRows?.length) {
    add(
      "POST /api/push/batch pushes/s",
      "(no target)",
      `${fmt(median(push.batchRows.map((x) => x.pushesPerSec)), 0)} (${push.settings.PUSH_BATCH_SIZE} per request)`,
    );
  }
}
const fanout = load("fanout");
if (fanout) {
  const r10 = fanout.ratios?.["10"];
  const ss10 = fanout.rows.filter((x) => x.target === "socket-server" && x.rate === 10);
  const ss5 = fanout.rows.filter((x) => x.target === "socket-server" && x.rate === 5);
  const p99at10 = median(ss10.map((x) => x.p99Ms));
  const p99at5 = median(ss5.map((x) => x.p99Ms));
  const missed5 = ss5.reduce((n, x) => n + x.missed, 0);
  const docs10 = fanout.rows.filter((x) => x.target === "docs-cluster" && x.rate === 10);
  const docsP99 = median(docs10.map((x) => x.p99Ms));
  add(
    "fan-out delivered/s at 10/s vs docs cluster",
    "≥ 1×",
    ratio(r10?.deliveredPerSec?.["docs-cluster"]),
    r10?.deliveredPerSec?.["docs-cluster"]?.median >= 1,
  );
  add(
    "fan-out p99 at 10/s vs docs cluster's",
    "≤ 1.2×",
    `${fmt(p99at10, 0)} ms vs ${fmt(docsP99, 0)} ms`,
    p99at10 <= 1.2 * docsP99,
  );
  const refused10 = ss10.reduce((n, x) => n + (x.refused ?? 0), 0);
  const pushes10 = ss10.reduce((n, x) => n + x.pushes, 0);
  add(
    "fan-out at 10/s: pushes refused with 503 (the docs cluster takes them all)",
    "0",
    `${refused10} of ${pushes10}`,
    refused10 === 0,
  );
  for (const [label, v] of Object.entries(r10?.variants ?? {})) {
    if (label === "socket-server") continue;
    add(
      `fan-out delivered/s at 10/s vs docs cluster, ${label}`,
      "≥ 1×",
      ratio(v.deliveredPerSec?.["docs-cluster"]),
      v.deliveredPerSec?.["docs-cluster"]?.median >= 1,
    );
  }
  floor("fan-out delivered/s at 10/s vs bare ws", r10?.deliveredPerSec?.["bare-ws"]);
  add(
    "fan-out at 5/s: missed, p99",
    "0, < 300 ms",
    `${missed5}, ${fmt(p99at5, 0)} ms`,
    missed5 === 0 && p99at5 < 300,
  );
}
const connect = load("connect");
if (connect) {
  for (const [mode, r] of Object.entries(connect.ratios ?? {})) {
    const label = `socket-server (${mode})`;
    const rows = connect.rows.filter((x) => x.target === label);
    const failed = rows.reduce((n, x) => n + x.failed, 0);
    const lag = Math.max(...rows.map((x) => x.lagP99WorstMs));
    add(
      `connect storm clients/s vs docs cluster (${mode})`,
      "≥ 1.5×",
      ratio(r["docs-cluster"]),
      r["docs-cluster"]?.median >= 1.5,
    );
    floor(`connect storm clients/s vs bare ws (${mode})`, r["bare-ws"]);
    add(
      `server CPU per client vs single (${mode})`,
      "≤ 1.5×",
      ratio(connect.cpuRatios?.[mode]?.single),
      connect.cpuRatios?.[mode]?.single?.median <= 1.5,
    );
    const registerP99 = median(rows.map((x) => x.registerAckP99Ms));
    add(
      `register ack p99 during the storm (${mode})`,
      "< 50 ms",
      `${fmt(registerP99, 0)} ms (single ${fmt(med(connect.rows, "single", "registerAckP99Ms"), 0)} ms)`,
      registerP99 < 50,
    );
    add(
      `failed or hung handshakes (${mode})`,
      "0",
      `${failed} of ${rows.length * connect.settings.CONNECT_CLIENTS}`,
      failed === 0,
    );
    add(
      `worker event-loop lag p99, worst 250 ms window (${mode})`,
      "< 50 ms",
      `${fmt(lag, 1)} ms`,
      lag < 50,
    );
  }
}

process.stdout.write(
  `| figure | target | measured (median over rounds, range) | met |\n|---|---|---|---|\n${lines.join("\n")}\n`,
);
