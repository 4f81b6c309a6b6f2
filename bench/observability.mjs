import { closeFleet, openFleet } from "./lib/fleet.mjs";
import { settings } from "./lib/knobs.mjs";
import { checkOpenFiles } from "./lib/limits.mjs";
import { machineInfo } from "./lib/machine.mjs";
import { pushLoad } from "./lib/push-load.mjs";
import { COLUMNS, markdownTable, printReport, writeResult } from "./lib/report.mjs";
import { runBench } from "./lib/run.mjs";
import { median, sleep } from "./lib/stats.mjs";
import { startTarget } from "./lib/targets.mjs";
import { benchApiKey, benchTokens } from "./lib/tokens.mjs";

/**
 * What observability costs on socket-server (2 workers by default):
 * 1. GET /metrics time and size with 0, 1k and 10k registered clients
 *    (each scrape on a fresh connection, as Prometheus does with the primary);
 * 2. POST /api/push throughput with no dashboard open and with
 *    DASH_FEEDS dashboard live feeds open (SSE, one sample per second),
 *    interleaved, DASH_ROUNDS times.
 */
const SPEC = {
  BENCH_WORKERS: [2, "worker processes"],
  SCRAPE_STEPS: [[0, 1000, 10000], "registered clients at each scrape measurement (cumulative)"],
  SCRAPE_COUNT: [20, "scrapes per step"],
  DASH_FEEDS: [3, "dashboard live feeds open during the 'with dashboard' runs"],
  DASH_ROUNDS: [3, "interleaved push runs without / with the dashboard"],
  DASH_DURATION_S: [8, "seconds per push run"],
  PUSH_CONNECTIONS: [32, "autocannon HTTP keep-alive connections"],
  ALG: ["HS256", "JWT algorithm of the clients"],
};

const DASHBOARD_TOKEN = "bench-dashboard-token-not-secret";

async function scrapeOnce(apiUrl) {
  const t0 = performance.now();
  const res = await fetch(`${apiUrl}/metrics`, { headers: { connection: "close" } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  // The primary's own measure: asking every worker and merging, no HTTP.
  const m = /^socket_server_metrics_scrape_duration_seconds (\S+)$/m.exec(text);
  return {
    ms: performance.now() - t0,
    serverMs: m ? Number(m[1]) * 1000 : Number.NaN,
    bytes: Buffer.byteLength(text),
  };
}

/** Opens `n` dashboard live feeds and counts the updates they receive. */
async function openFeeds(apiUrl, n) {
  const feeds = [];
  for (let i = 0; i < n; i++) {
    const ctrl = new AbortController();
    const res = await fetch(`${apiUrl}/dashboard/api/feed`, {
      headers: { authorization: `Bearer ${DASHBOARD_TOKEN}` },
      signal: ctrl.signal,
    });
    if (res.status !== 200) throw new Error(`feed answered ${res.status}`);
    const feed = { ctrl, updates: 0 };
    (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of res.body) {
        feed.updates += (
          decoder.decode(chunk, { stream: true }).match(/event: update/g) ?? []
        ).length;
      }
    })().catch(() => {});
    feeds.push(feed);
  }
  return feeds;
}

async function main() {
  const o = settings("bench: observability cost (scrape time, dashboard vs push throughput)", SPEC);
  const max = Math.max(...o.SCRAPE_STEPS);
  checkOpenFiles(max);
  const { keys, tokens } = await benchTokens(o.ALG, max);
  const target = await startTarget("socket-server", {
    keys,
    apiKey: benchApiKey(),
    workers: o.BENCH_WORKERS,
    env: { DASHBOARD_TOKEN },
  });
  const clients = [];
  const scrapeRows = [];
  const pushRows = [];
  try {
    let have = 0;
    for (const step of o.SCRAPE_STEPS) {
      if (step > have) {
        const fleet = await openFleet(target, tokens.slice(have, step), {
          concurrency: 200,
          userOf: (i) => `u${have + i}`,
          retries: 3,
        });
        clients.push(...fleet.clients);
        if (fleet.completed !== step - have) throw new Error(`${fleet.failed} clients failed`);
        have = step;
        await sleep(2000);
      }
      const runs = [];
      for (let i = 0; i < o.SCRAPE_COUNT; i++) runs.push(await scrapeOnce(target.apiUrl));
      const ms = runs.map((r) => r.ms).sort((a, b) => a - b);
      scrapeRows.push({
        clients: step,
        serverMedianMs: median(runs.map((r) => r.serverMs)),
        medianMs: median(ms),
        p95Ms: ms[Math.floor(ms.length * 0.95)] ?? ms.at(-1),
        maxMs: ms.at(-1),
        kb: runs[0].bytes / 1024,
      });
      process.stdout.write(`scrape with ${step} clients: ${JSON.stringify(scrapeRows.at(-1))}\n`);
    }

    const users = Math.max(1, have);
    for (let round = 0; round < o.DASH_ROUNDS; round++) {
      for (const withDash of round % 2 === 0 ? [false, true] : [true, false]) {
        const feeds = withDash ? await openFeeds(target.apiUrl, o.DASH_FEEDS) : [];
        const r = await pushLoad(target, {
          users,
          duration: o.DASH_DURATION_S,
          connections: o.PUSH_CONNECTIONS,
        });
        for (const f of feeds) f.ctrl.abort();
        const row = {
          round,
          dashboard: withDash ? `${o.DASH_FEEDS} feeds` : "none",
          reqPerSec: r.requests.average,
          p99Ms: r.latency.p99,
          non2xx: r.non2xx,
          updates: feeds.reduce((n, f) => n + f.updates, 0),
        };
        pushRows.push(row);
        process.stdout.write(`push run: ${JSON.stringify(row)}\n`);
        await sleep(1000);
      }
    }
  } finally {
    await closeFleet(clients);
    await target.stop();
  }
  const mean = (rows) => rows.reduce((n, r) => n + r.reqPerSec, 0) / rows.length;
  const without = mean(pushRows.filter((r) => r.dashboard === "none"));
  const withD = mean(pushRows.filter((r) => r.dashboard !== "none"));
  const summary = `pushes/s with the dashboard open / without: ${(withD / without).toFixed(3)} (${withD.toFixed(0)} / ${without.toFixed(0)})`;
  const machine = machineInfo();
  const scrapeTable = markdownTable(
    [
      { key: "clients", title: "clients", digits: 0 },
      { key: "serverMedianMs", title: "primary gather+merge median ms", digits: 1 },
      { key: "medianMs", title: "HTTP median ms", digits: 1 },
      { key: "p95Ms", title: "p95 ms", digits: 1 },
      { key: "maxMs", title: "max ms", digits: 1 },
      { key: "kb", title: "KB", digits: 0 },
    ],
    scrapeRows,
  );
  const pushTable = markdownTable(
    [
      { key: "round", title: "round" },
      { key: "dashboard", title: "dashboard" },
      { key: "reqPerSec", title: "pushes/s", digits: 0 },
      { key: "p99Ms", title: "p99 ms", digits: 0 },
      COLUMNS.non2xx,
      { key: "updates", title: "feed updates", digits: 0 },
    ],
    pushRows,
  );
  printReport("observability", machine, [
    "GET /metrics, 2 workers, a fresh connection per scrape:",
    scrapeTable,
    "POST /api/push with and without dashboards open:",
    pushTable,
    summary,
  ]);
  writeResult("observability", { knobs: o, scrape: scrapeRows, pushes: pushRows, summary });
}

await runBench(main);
