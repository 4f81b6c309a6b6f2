import client from "prom-client";
import { ERRORS } from "./errors.js";
import { BUILT_IN_EVENTS } from "./events.js";

/**
 * Every metric, in one module: `socket_server_<subsystem>_<name>_<unit>`,
 * bounded labels only (never a user or room name).
 *
 * Two registries: `registry` is what a worker reports, `primaryRegistry` what
 * the primary adds. The primary merges the workers' JSON with prom-client's
 * AggregatorRegistry.aggregate (see src/primary/metrics-aggregator.ts), so
 * the `aggregator` of each metric says how: counters, histograms and per-host
 * gauges are summed; per-process gauges carry a `worker` label so that each
 * series stays intact in the sum; state gauges take the max or min. Keeping
 * the registries apart matters: a label-less gauge reports 0 until it is set,
 * and a 0 from the primary would win every `min`.
 */
export const registry = new client.Registry();
export const primaryRegistry = new client.Registry();

type Registries = client.Registry[];
const WORKER: Registries = [registry];
const BOTH: Registries = [registry, primaryRegistry];
const PRIMARY: Registries = [primaryRegistry];

const counter = <L extends string>(
  name: string,
  help: string,
  labelNames: L[] = [],
  registers: Registries = WORKER,
) => new client.Counter<L>({ name, help, labelNames, registers });
const gauge = <L extends string>(
  name: string,
  help: string,
  labelNames: L[] = [],
  aggregator: client.Aggregator = "sum",
  registers: Registries = WORKER,
) => new client.Gauge<L>({ name, help, labelNames, aggregator, registers });
const histogram = <L extends string>(
  name: string,
  help: string,
  buckets: number[],
  labelNames: L[] = [],
) => new client.Histogram<L>({ name, help, buckets, labelNames, registers: WORKER });

const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

export const metrics = {
  // gateway (gauges are sampled when a scrape asks; see worker-metrics.ts)
  connections: gauge(
    "socket_server_gateway_connections",
    "Sockets connected to the namespace (past the handshake) on this host",
  ),
  registeredSockets: gauge(
    "socket_server_gateway_registered_sockets",
    "Connected sockets that have registered as a user",
  ),
  users: gauge(
    "socket_server_gateway_users",
    "Distinct registered users per worker, summed over workers (a user with sockets on two workers counts twice)",
  ),
  rooms: gauge(
    "socket_server_gateway_rooms",
    "Rooms with at least one socket, besides socket and user:<id> rooms, summed over workers (a room on two workers counts twice)",
  ),
  connects: counter("socket_server_gateway_connects_total", "Sockets that completed the handshake"),
  disconnects: counter(
    "socket_server_gateway_disconnects_total",
    "Socket disconnects by Socket.IO reason (transport_close, ping_timeout, server_namespace_disconnect, ...)",
    ["reason"],
  ),
  serverDisconnects: counter(
    "socket_server_gateway_server_disconnects_total",
    "Sockets the server disconnected, by the code sent to the client",
    ["code"],
  ),
  authFailures: counter(
    "socket_server_auth_failures_total",
    "Handshakes refused for their token, by code (AUTH_MISSING, AUTH_INVALID, AUTH_EXPIRED, AUTH_REVOKED)",
    ["code"],
  ),
  eventsIn: counter(
    "socket_server_gateway_events_in_total",
    "Client events received, by kind (register, auth:refresh, room:join, room:leave, presence:list, room:signal, forward)",
    ["kind"],
  ),
  eventsOut: counter(
    "socket_server_gateway_events_out_total",
    "Events written to client sockets, by kind (push: backend pushes; system: the server's own events, server:disconnect, presence:*, room:signal)",
    ["kind"],
  ),
  eventRejections: counter(
    "socket_server_gateway_event_rejections_total",
    "Client events answered with an error ack, by code",
    ["code"],
  ),

  // rooms that feel live (PRESENCE_ROOMS, SIGNAL_ROOMS)
  presenceNotices: counter(
    "socket_server_presence_notices_total",
    "presence:join and presence:leave notices emitted to their rooms, by kind (join, leave); once each however many members get them",
    ["kind"],
  ),
  signals: counter(
    "socket_server_signal_messages_total",
    "room:signal events by outcome (relayed, or the ack's error code in lower case)",
    ["outcome"],
  ),

  // backend HTTP API
  apiRequests: counter(
    "socket_server_api_requests_total",
    "Backend API requests by method, route pattern and status",
    ["method", "route", "status"],
  ),
  apiDuration: histogram(
    "socket_server_api_request_duration_seconds",
    "Backend API request time, from the first byte handled to the response finished",
    LATENCY_BUCKETS,
    ["method", "route"],
  ),

  // push API
  pushes: counter(
    "socket_server_push_requests_total",
    "Pushes the API accepted, by target (user, users, room, rooms, broadcast) and outcome (accepted)",
    ["target", "outcome"],
  ),
  pushEmitLatency: histogram(
    "socket_server_push_emit_latency_seconds",
    "From the push service taking a validated push to the emit call returning",
    LATENCY_BUCKETS,
  ),
  pushAcks: counter("socket_server_push_acks_total", "Client acks for pushes with ackTimeoutMs", [
    "outcome",
  ]),
  pushDuplicates: counter(
    "socket_server_push_duplicates_total",
    "Pushes refused as duplicates of an idempotency key",
  ),
  offlineStored: counter("socket_server_offline_stored_total", "Pushes stored for offline users"),
  offlineReplayed: counter("socket_server_offline_replayed_total", "Stored pushes delivered"),
  // Both registries: the host's store lives in the primary, whose sweep finds
  // expiries and whose lease returns can drop; workers count the rest.
  offlineExpired: counter(
    "socket_server_offline_expired_total",
    "Stored pushes that expired",
    [],
    BOTH,
  ),
  offlineDropped: counter(
    "socket_server_offline_dropped_total",
    "Stored pushes dropped over a bound, by reason (user_limit, total_limit, store_unavailable)",
    ["reason"],
    BOTH,
  ),

  // history rooms (HISTORY_ROOMS): positions and recovery
  historyPushes: counter(
    "socket_server_history_pushes_total",
    "Pushes appended to a history room (one per room), by store (redis, host: the primary's)",
    ["store"],
  ),
  historyRecoveries: counter(
    "socket_server_history_recoveries_total",
    "Joins with `since`, by outcome (recovered; reset: the history no longer reaches back, another epoch, or the store is down)",
    ["outcome"],
  ),
  historyReplayed: counter(
    "socket_server_history_replayed_total",
    "Pushes delivered from a room's history to a recovering socket",
  ),

  // forwarding to the backend
  forwards: counter(
    "socket_server_forward_requests_total",
    "Forwarded client events by outcome (ok, or the ack's error code in lower case)",
    ["outcome"],
  ),
  forwardLatency: histogram(
    "socket_server_forward_latency_seconds",
    "Forwarded event: from receipt to the backend's final answer, retries included",
    LATENCY_BUCKETS,
  ),
  forwardRetries: counter("socket_server_forward_retries_total", "Retried forward attempts"),
  forwardBreakerState: gauge(
    "socket_server_forward_breaker_state",
    "Circuit breaker toward the backend: 0 closed, 1 half-open, 2 open (max over workers)",
    [],
    "max",
  ),
  forwardInFlight: gauge("socket_server_forward_in_flight", "Forwards in flight or queued"),

  // protection
  rateLimited: counter(
    "socket_server_ratelimit_rejections_total",
    "Requests and events refused by a rate limit, by scope",
    ["scope"],
  ),
  shed: counter("socket_server_shed_total", "Work refused by load shedding, by reason", ["reason"]),
  errors: counter(
    "socket_server_errors_total",
    "Unexpected errors (error and fatal log lines), by the module that logged them",
    ["kind"],
    BOTH,
  ),
  logMessages: counter(
    "socket_server_log_messages_total",
    "Log lines written at warn level or above, by level (error and fatal lines are unexpected errors)",
    ["level"],
    BOTH,
  ),

  // per process (the worker label, "0".."N-1" or "primary", keeps each series intact in the sum)
  eventLoopLag: gauge(
    "socket_server_process_event_loop_lag_p99_seconds",
    "Event-loop delay p99 over the last second",
    ["worker"],
    "sum",
    BOTH,
  ),
  eventLoopUtilization: gauge(
    "socket_server_process_event_loop_utilization_ratio",
    "Event-loop utilization over the last second (0..1)",
    ["worker"],
    "sum",
    BOTH,
  ),

  // auth thread pool
  authPoolQueue: gauge("socket_server_auth_pool_queue_depth", "Token verifications waiting"),
  authDuration: histogram(
    "socket_server_auth_verify_duration_seconds",
    "Token verification time, inline or through the pool (queueing included)",
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1],
    ["mode"],
  ),

  // redis: registered only with REDIS_URL (registerRedisMetrics), so that a
  // host without Redis reports no `redis_up` rather than a false 0.
  redisUp: new client.Gauge({
    name: "socket_server_redis_up",
    help: "1 when the worker's Redis connections are ready (min over workers); only with REDIS_URL",
    aggregator: "min",
    registers: [],
  }),
};

/** Metrics only the primary reports. */
export const primaryMetrics = {
  workerUp: gauge(
    "socket_server_worker_up",
    "1 for each worker that answered this scrape, 0 for one that is restarting or did not answer in time",
    ["worker"],
    "sum",
    PRIMARY,
  ),
  workersReplaced: counter(
    "socket_server_workers_replaced_total",
    "Workers the primary killed and replaced because they stopped answering its heartbeat (WORKER_HANG_TIMEOUT_MS)",
    ["reason"],
    PRIMARY,
  ),
  workerRestarts: counter(
    "socket_server_worker_restarts_total",
    "Worker processes that exited unexpectedly and were restarted by the primary",
    ["worker"],
    PRIMARY,
  ),
  scrapeDuration: gauge(
    "socket_server_metrics_scrape_duration_seconds",
    "How long the primary took to gather and merge every worker's metrics for this scrape",
    [],
    "sum",
    PRIMARY,
  ),
  dashboardClients: gauge(
    "socket_server_dashboard_clients",
    "Open dashboard live feeds (not Socket.IO connections)",
    [],
    "sum",
    PRIMARY,
  ),
};

/**
 * Counters the alert rules read (deploy/prometheus/alerts.yml) exist from the
 * start at 0 for every label value they will have: `increase()` and `rate()`
 * cannot see a series' first sample, so a series that first appears at 1
 * would never fire its alert. (The worker label of `worker_restarts_total`
 * is known once the primary knows its slots: metrics-aggregator.ts.)
 */
export function startAlertCountersAtZero(): void {
  for (const level of ["warn", "error", "fatal"]) metrics.logMessages.inc({ level }, 0);
  for (const code of ["AUTH_MISSING", "AUTH_INVALID", "AUTH_EXPIRED", "AUTH_REVOKED"]) {
    metrics.authFailures.inc({ code }, 0);
  }
  for (const code of Object.keys(ERRORS)) metrics.eventRejections.inc({ code }, 0);
  for (const kind of [...BUILT_IN_EVENTS, "forward"]) metrics.eventsIn.inc({ kind }, 0);
  primaryMetrics.workersReplaced.inc({ reason: "hung" }, 0);
}
startAlertCountersAtZero();

export function registerRedisMetrics(): void {
  if (!registry.getSingleMetric("socket_server_redis_up")) registry.registerMetric(metrics.redisUp);
}

/** Names of prom-client's process and Node.js metrics, with our prefix. */
export const PROCESS_METRICS_PREFIX = "socket_server_";

/**
 * prom-client metrics that walk every open handle or resource on each
 * collection: with 50k sockets in a worker they block its event loop for
 * tens of milliseconds per scrape, and `gateway_connections` already says
 * what they would. (`process_open_fds` also lists every descriptor, but fd
 * exhaustion is worth that.)
 */
const PER_HANDLE_METRICS = new Set(
  [
    "nodejs_active_handles",
    "nodejs_active_handles_total",
    "nodejs_active_resources",
    "nodejs_active_resources_total",
  ].map((n) => `${PROCESS_METRICS_PREFIX}${n}`),
);

/**
 * prom-client's process and Node.js metrics (CPU, memory, heap, GC, its own
 * event-loop lag), once per process, labelled with the worker so that every
 * process keeps its own series through the merge.
 */
export function collectProcessMetrics(target: client.Registry, worker: string): void {
  const scratch = new client.Registry();
  client.collectDefaultMetrics({
    register: scratch,
    prefix: PROCESS_METRICS_PREFIX,
    labels: { worker },
  });
  for (const m of scratch.getMetricsAsArray()) {
    if (PER_HANDLE_METRICS.has(m.name)) continue;
    // A gauge named *_total (prom-client's nodejs_active_requests_total) breaks the
    // naming rule `promtool check metrics` enforces; the per-type gauge says the same.
    if (m instanceof client.Gauge && m.name.endsWith("_total")) continue;
    target.registerMetric(m as unknown as client.Metric);
  }
}
