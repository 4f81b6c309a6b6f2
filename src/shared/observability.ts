/**
 * What a worker answers the primary for /metrics and the dashboard (the
 * `metrics`, `dashboard` and `dashboard-rooms` queries in ipc.ts), and what
 * the primary answers a worker relaying a scrape.
 */

/** One metric as `registry.getMetricsAsJSON()` returns it (structured-clone safe). */
export interface MetricJson {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[];
}
export type MetricsJson = MetricJson[];

export interface MetricsAnswer {
  pid: number;
  metrics: MetricsJson;
}

/** Counters the dashboard turns into rates (cumulative since the worker started). */
export interface RateTotals {
  in: number;
  out: number;
  errors: number;
}

/** Above this many distinct users or rooms a worker sends only the count. */
export const DASHBOARD_ID_LIMIT = 1_000;

export interface DashboardAnswer {
  worker: number;
  pid: number;
  connections: number;
  registeredSockets: number;
  users: number;
  /** Present when the worker has at most DASHBOARD_ID_LIMIT users (exact union). */
  userIds?: string[];
  rooms: number;
  roomNames?: string[];
  lagMs: number;
  elu: number;
  rssBytes: number;
  heapUsedBytes: number;
  uptimeSeconds: number;
  totals: RateTotals;
  logs: { seq: number; lines: string[] };
}

export interface RoomsPageAnswer {
  /** This worker's first `limit` matching rooms after the cursor, sorted, with socket counts. */
  rooms: [name: string, sockets: number][];
  /** Matching rooms on this worker. */
  total: number;
}

/**
 * A scrape that reached a worker (a keep-alive connection the balancer handed
 * to a worker for an API call): the worker asks the primary for the same
 * merged text the primary serves itself (`ss:scrape` in ipc.ts).
 */
export interface ScrapeAnswer {
  text: string;
  contentType: string;
}
