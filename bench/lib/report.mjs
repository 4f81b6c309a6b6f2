import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeMachine, machineInfo, ROOT } from "./machine.mjs";
import { median } from "./stats.mjs";

/** Results: one JSON file per run in bench/results/, and a markdown table on stdout. */

export const RESULTS_DIR = process.env.BENCH_RESULTS_DIR || join(ROOT, "bench", "results");

export function fmt(v, digits = 0) {
  if (v === undefined || v === null || (typeof v === "number" && !Number.isFinite(v))) return "–";
  if (typeof v !== "number") return String(v);
  return v.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** columns: [{ key, title, digits? , get?(row) }] */
export function markdownTable(columns, rows) {
  const head = `| ${columns.map((c) => c.title).join(" | ")} |`;
  const sep = `|${columns.map((c) => (c.digits === undefined ? "---" : "---:")).join("|")}|`;
  const body = rows.map(
    (r) =>
      `| ${columns
        .map((c) => {
          const v = c.get ? c.get(r) : r[c.key];
          return c.digits === undefined ? (v ?? "–") : fmt(v, c.digits);
        })
        .join(" | ")} |`,
  );
  return [head, sep, ...body].join("\n");
}

/** Columns that mean the same in every bench that shows them. */
export const COLUMNS = {
  target: { key: "target", title: "target" },
  round: { key: "round", title: "round", digits: 0 },
  non2xx: { key: "non2xx", title: "non-2xx", digits: 0 },
  /** Latency from the push call to the client, from deliveryCounter(). */
  delivery: [
    { key: "deliveryP50Ms", title: "delivery p50 ms", digits: 1 },
    { key: "deliveryP99Ms", title: "delivery p99 ms", digits: 1 },
    { key: "deliveryMaxMs", title: "delivery max ms", digits: 1 },
  ],
  serverCores: { key: "serverCores", title: "server CPU (cores)", digits: 2 },
  loadgenCores: { key: "loadgenCores", title: "loadgen CPU (cores)", digits: 2 },
  lagP99WorstMs: { key: "lagP99WorstMs", title: "worst lag p99 ms", digits: 1 },
};

/**
 * Ratios of socket-server (or one of its variants, `subject`) to each
 * baseline, computed within each round (the runs that were interleaved) and
 * summarised as median (min–max). Other socket-server variants in the rows
 * ("socket-server (…)", see withVariants) are not baselines.
 */
export function ratios(rows, metric, { higherIsBetter = true, subject = "socket-server" } = {}) {
  const byRound = new Map();
  for (const r of rows) {
    const m = byRound.get(r.round) ?? new Map();
    m.set(r.target, r[metric]);
    byRound.set(r.round, m);
  }
  const out = {};
  const isServer = (t) => t === "socket-server" || t.startsWith("socket-server (");
  const baselines = [...new Set(rows.map((r) => r.target))].filter((t) => !isServer(t));
  for (const b of baselines) {
    const list = [];
    for (const m of byRound.values()) {
      const s = m.get(subject);
      const v = m.get(b);
      if (Number.isFinite(s) && Number.isFinite(v) && v !== 0 && s !== 0) {
        list.push(higherIsBetter ? s / v : v / s);
      }
    }
    if (list.length) {
      out[b] = {
        median: median(list),
        min: Math.min(...list),
        max: Math.max(...list),
        rounds: list,
      };
    }
  }
  return out;
}

export function describeRatios(title, r) {
  const parts = Object.entries(r).map(
    ([b, x]) =>
      `${b}: ${fmt(x.median, 2)}×` +
      (x.rounds.length > 1 ? ` (${fmt(x.min, 2)}–${fmt(x.max, 2)})` : ""),
  );
  return parts.length ? `${title} — socket-server vs ${parts.join(", ")}` : "";
}

export function writeResult(bench, data) {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const machine = machineInfo();
  const at = new Date().toISOString();
  const file = join(RESULTS_DIR, `${bench}-${at.replace(/[:.]/g, "-")}.json`);
  const doc = { bench, at, machine, command: process.argv.slice(1).join(" "), ...data };
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  writeFileSync(join(RESULTS_DIR, `${bench}-latest.json`), `${JSON.stringify(doc, null, 2)}\n`);
  return { file, machine };
}

/** Writes the result file, then prints the report with the file's path as its last line. */
export function publish(bench, data, title, sections) {
  const { machine, file } = writeResult(bench, data);
  printReport(title, machine, [...sections, `result: ${file}`]);
}

export function printReport(title, machine, sections) {
  const out = [`## ${title}`, "", `machine: ${describeMachine(machine)}`, ""];
  for (const s of sections) if (s) out.push(s, "");
  process.stdout.write(`${out.join("\n")}\n`);
}
