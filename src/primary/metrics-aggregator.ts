import type http from "node:http";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import type { Logger } from "pino";
import client from "prom-client";
import {
  collectProcessMetrics,
  metrics,
  primaryMetrics,
  primaryRegistry,
} from "../shared/metrics.js";
import type { MetricJson, MetricsAnswer, MetricsJson } from "../shared/observability.js";
import { writeHttpError } from "../shared/http-error.js";
import type { IpcHub } from "./ipc-hub.js";
import type { QueryHub } from "./queries.js";
import type { Supervisor } from "./supervisor.js";

/**
 * One `GET /metrics` for the whole host. The primary asks every worker for
 * its registry as JSON (a `metrics` query through the QueryHub, so a dead
 * worker is skipped at once and a stuck one after `timeoutMs`), merges them
 * with prom-client's AggregatorRegistry.aggregate and adds its own registry.
 *
 * What a missing worker shows, and why counters never go backwards:
 * - `socket_server_worker_up{worker}` is 0 for it;
 * - a worker that is alive but did not answer in time contributes the
 *   counters and histograms of its last answer (so host-wide sums do not
 *   dip) and none of its gauges (they would be stale);
 * - when a worker exits, the counters and histograms of its last answer are
 *   folded into a "retired" total that is added to every later scrape, so
 *   the replacement worker starting from zero does not make a sum go down.
 *   Increments made after the dead worker's last answer are lost: at most
 *   one scrape interval of one worker, never a decrease.
 * Per-process series (the `worker` label) restart with the process only for
 * gauges; its counters carry on the same way.
 */

const CUMULATIVE = new Set(["counter", "histogram"]);

type ValueKey = string;
interface Folded {
  meta: Omit<MetricJson, "values">;
  values: Map<ValueKey, MetricJson["values"][number]>;
}

function valueKey(v: MetricJson["values"][number]): ValueKey {
  const labels = Object.keys(v.labels)
    .sort()
    .map((k) => `${k}=${String(v.labels[k])}`)
    .join(",");
  return `${v.metricName ?? ""}{${labels}}`;
}

/** Adds the counters and histograms of `snapshot` into `into` (mutates it). */
export function foldCumulative(into: Map<string, Folded>, snapshot: MetricsJson): void {
  for (const m of snapshot) {
    if (!CUMULATIVE.has(m.type)) continue;
    let f = into.get(m.name);
    if (!f) {
      const { values: _v, ...meta } = m;
      f = { meta, values: new Map() };
      into.set(m.name, f);
    }
    for (const v of m.values) {
      const key = valueKey(v);
      const prev = f.values.get(key);
      if (prev) prev.value += v.value;
      else f.values.set(key, { ...v, labels: { ...v.labels } });
    }
  }
}

function foldedJson(folded: Map<string, Folded>): MetricsJson {
  return [...folded.values()].map((f) => ({ ...f.meta, values: [...f.values.values()] }));
}

/**
 * Every process's own series carry a distinct `worker` label, so any
 * aggregator leaves them as they are; prom-client's `omit` (process start
 * time) would drop them instead.
 */
function keepPerProcess(json: MetricsJson): MetricsJson {
  return json.map((m) =>
    m.aggregator === "omit" && m.values.every((v) => v.labels["worker"] !== undefined)
      ? { ...m, aggregator: "first" }
      : m,
  );
}

export interface MetricsAggregator {
  /** The merged exposition text. */
  scrape(): Promise<string>;
  handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void>;
  stop(): void;
}

export function createMetricsAggregator(deps: {
  hub: QueryHub;
  ipc: IpcHub;
  sup: Supervisor;
  timeoutMs: number;
  log: Logger;
}): MetricsAggregator {
  const { hub, sup, log } = deps;
  collectProcessMetrics(primaryRegistry, "primary");

  // The primary's own event loop, like every worker's: it relays broadcasts.
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  let lastElu = performance.eventLoopUtilization();
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    metrics.eventLoopUtilization.set(
      { worker: "primary" },
      performance.eventLoopUtilization(now, lastElu).utilization,
    );
    lastElu = now;
    metrics.eventLoopLag.set({ worker: "primary" }, lag.percentile(99) / 1e9);
    lag.reset();
  }, 1_000);
  timer.unref();

  const last = new Map<number, MetricsAnswer>();
  const retired = new Map<string, Folded>();
  sup.on("exit", (slot) => {
    const snap = last.get(slot);
    if (!snap) return;
    last.delete(slot);
    foldCumulative(retired, snap.metrics);
  });

  // At 0 for every slot from the start, so that increase() sees the first restart.
  for (const s of sup.slots) primaryMetrics.workerRestarts.inc({ worker: String(s.slot) }, 0);
  const restartsSeen = new Map<number, number>();
  const countRestarts = () => {
    for (const s of sup.slots) {
      const seen = restartsSeen.get(s.slot) ?? 0;
      if (s.restarts > seen) {
        primaryMetrics.workerRestarts.inc({ worker: String(s.slot) }, s.restarts - seen);
        restartsSeen.set(s.slot, s.restarts);
      }
    }
  };

  let inFlight: Promise<string> | undefined;
  async function gather(): Promise<string> {
    const started = performance.now();
    const { replies, missing } = await hub.run({ kind: "metrics" }, deps.timeoutMs);
    const parts: MetricsJson[] = [];
    primaryMetrics.workerUp.reset();
    for (const r of replies) {
      if (r.error) {
        missing.push(r.slot);
        continue;
      }
      const answer = r.result as MetricsAnswer;
      last.set(r.slot, answer);
      parts.push(keepPerProcess(answer.metrics));
      primaryMetrics.workerUp.set({ worker: String(r.slot) }, 1);
    }
    for (const slot of missing) {
      primaryMetrics.workerUp.set({ worker: String(slot) }, 0);
      const snap = last.get(slot);
      const pid = sup.slots[slot]?.worker?.process.pid;
      if (snap && snap.pid === pid) {
        parts.push(snap.metrics.filter((m) => CUMULATIVE.has(m.type)));
      }
    }
    if (missing.length > 0) {
      log.warn({ missing }, "metrics: some workers did not answer; their last counters are used");
    }
    parts.push(foldedJson(retired));
    countRestarts();
    primaryMetrics.scrapeDuration.set((performance.now() - started) / 1000);
    parts.push(
      keepPerProcess((await primaryRegistry.getMetricsAsJSON()) as unknown as MetricsJson),
    );
    const merged = client.AggregatorRegistry.aggregate(
      parts as unknown as Parameters<typeof client.AggregatorRegistry.aggregate>[0],
    );
    return merged.metrics();
  }

  const scrape = () => {
    // Scrapes that arrive together share one round of worker queries.
    inFlight ??= gather().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };

  // A scrape that reached a worker on a keep-alive API connection.
  deps.ipc.answer("ss:scrape", async () => ({
    text: await scrape(),
    contentType: primaryRegistry.contentType,
  }));

  return {
    scrape,
    async handle(req, res) {
      if (req.method !== "GET" && req.method !== "HEAD") {
        writeHttpError(req, res, "METHOD_NOT_ALLOWED", undefined, {
          headers: { allow: "GET, HEAD" },
        });
        return;
      }
      const text = await scrape();
      res.writeHead(200, {
        "content-type": primaryRegistry.contentType,
        "content-length": Buffer.byteLength(text),
        "cache-control": "no-store",
      });
      res.end(req.method === "HEAD" ? undefined : text);
    },
    stop() {
      clearInterval(timer);
      lag.disable();
    },
  };
}
