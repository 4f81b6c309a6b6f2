import { performance } from "node:perf_hooks";
import { BUILT_IN_EVENTS, SERVER_EVENTS, userRoom } from "../shared/events.js";
import type { LogRing } from "../shared/log-ring.js";
import {
  collectProcessMetrics,
  metrics,
  registerRedisMetrics,
  registry,
} from "../shared/metrics.js";
import {
  DASHBOARD_ID_LIMIT,
  type DashboardAnswer,
  type MetricsAnswer,
  type MetricsJson,
  type RateTotals,
  type RoomsPageAnswer,
} from "../shared/observability.js";
import type { GatewayServer, GatewaySocket } from "./gateway/gateway.js";
import { countOutgoingEvents, wrapAckFunctions } from "./sio-internals.js";

/**
 * A worker's instrumentation and its answers to the primary's metrics and
 * dashboard queries. Incoming events are counted per socket with shared
 * listener functions (no closure per socket), outgoing ones once per emit or
 * broadcast with the number of sockets it reached; gauges are sampled only
 * when the primary asks, so a worker pays nothing for them between scrapes.
 */

export interface WorkerMetricsDeps {
  io: GatewayServer;
  slot: number;
  /** Event-loop delay p99 of the last second, ms (create-worker measures it). */
  lagMs: () => number;
  authQueue: () => number;
  logs: LogRing;
  redis: boolean;
}

export interface WorkerObservability {
  metricsAnswer(): Promise<MetricsAnswer>;
  dashboardAnswer(q: { logsAfter: Record<string, number> }): Promise<DashboardAnswer>;
  roomsPage(q: {
    after?: string | undefined;
    limit: number;
    prefix?: string | undefined;
    userRooms: boolean;
  }): RoomsPageAnswer;
  /**
   * The one definition of "rooms" (status, metrics, dashboard): rooms other
   * than a socket's own and the personal `user:<id>` rooms, which count as
   * users.
   */
  counts(): { users: number; rooms: number };
  stop(): void;
}

const USER_ROOM_PREFIX = userRoom("");
const IN_KIND = new Map<string, string>(BUILT_IN_EVENTS.map((e) => [e, e]));
const SYSTEM_EVENTS = new Set<unknown>(SERVER_EVENTS);

const pushOut = metrics.eventsOut.labels({ kind: "push" });
const systemOut = metrics.eventsOut.labels({ kind: "system" });
const forwardIn = metrics.eventsIn.labels({ kind: "forward" });

function countIncoming(event: unknown): void {
  const kind = typeof event === "string" ? IN_KIND.get(event) : undefined;
  if (kind) metrics.eventsIn.inc({ kind });
  else forwardIn.inc();
}

function countOutgoing(event: unknown, sockets: number): void {
  if (SYSTEM_EVENTS.has(event)) systemOut.inc(sockets);
  else pushOut.inc(sockets);
}

/** Hands over the outgoing events counted since the last call (set once per process). */
let flushOutgoing: (() => void) | undefined;

function countDisconnect(reason: string): void {
  metrics.disconnects.inc({ reason: reason.replaceAll(" ", "_") });
}

let acksPatched = false;
/**
 * Counts every error ack (`{ ok: false, error: { code } }`) whichever handler
 * sends it, by wrapping the ack functions Socket.IO creates for incoming
 * events (no public hook: sio-internals.ts); test/metrics.test.ts fails if
 * it stops counting.
 */
function countErrorAcks(): void {
  if (acksPatched) return;
  acksPatched = wrapAckFunctions((send) => (...args: unknown[]) => {
    const code = (args[0] as { ok?: unknown; error?: { code?: unknown } } | null)?.error?.code;
    if ((args[0] as { ok?: unknown } | null)?.ok === false && typeof code === "string") {
      metrics.eventRejections.inc({ code });
    }
    send(...args);
  });
}

async function total(metric: { get(): Promise<{ values: { value: number }[] }> }) {
  return (await metric.get()).values.reduce((n, v) => n + v.value, 0);
}

async function apiErrors(): Promise<number> {
  const { values } = await metrics.apiRequests.get();
  return values.reduce((n, v) => (Number(v.labels.status) >= 400 ? n + v.value : n), 0);
}

/** The counters behind the dashboard's rates; the README lists the same sums. */
async function rateTotals(): Promise<RateTotals> {
  flushOutgoing?.();
  const [eventsIn, eventsOut, auth, rejections, api, logs] = await Promise.all([
    total(metrics.eventsIn),
    total(metrics.eventsOut),
    total(metrics.authFailures),
    total(metrics.eventRejections),
    apiErrors(),
    metrics.logMessages.get(),
  ]);
  const errorLines = logs.values.reduce(
    (n, v) => (v.labels.level === "error" || v.labels.level === "fatal" ? n + v.value : n),
    0,
  );
  return { in: eventsIn, out: eventsOut, errors: auth + rejections + api + errorLines };
}

export function createWorkerObservability(deps: WorkerMetricsDeps): WorkerObservability {
  const { io, slot } = deps;
  const worker = String(slot);
  const nsp = io.of("/");
  collectProcessMetrics(registry, worker);
  if (deps.redis) registerRedisMetrics();
  countErrorAcks();
  // Per broadcast, not per recipient (sio-internals.ts); test/metrics.test.ts
  // fails if it stops counting.
  flushOutgoing ??= countOutgoingEvents(countOutgoing);

  io.on("connection", (socket: GatewaySocket) => {
    metrics.connects.inc();
    socket.prependAny(countIncoming);
    socket.on("disconnect", countDisconnect);
  });

  // Event-loop utilization over one-second windows, like the lag.
  let lastElu = performance.eventLoopUtilization();
  let elu = 0;
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    elu = performance.eventLoopUtilization(now, lastElu).utilization;
    lastElu = now;
    metrics.eventLoopUtilization.set({ worker }, elu);
    metrics.eventLoopLag.set({ worker }, deps.lagMs() / 1000);
  }, 1_000);
  timer.unref();

  // Room and user counts kept up to date from the adapter's own events, so
  // that a scrape or a dashboard sample never walks every socket or room.
  const index = { userRooms: new Set<string>(), otherRooms: new Set<string>(), registered: 0 };
  const adapter = nsp.adapter;
  const isSocketRoom = (room: string) => adapter.sids.has(room);
  adapter.on("create-room", (room: string) => {
    if (isSocketRoom(room)) return;
    if (room.startsWith(USER_ROOM_PREFIX)) index.userRooms.add(room);
    else index.otherRooms.add(room);
  });
  adapter.on("delete-room", (room: string) => {
    if (!index.userRooms.delete(room)) index.otherRooms.delete(room);
  });
  adapter.on("join-room", (room: string) => {
    if (room.startsWith(USER_ROOM_PREFIX)) index.registered += 1;
  });
  adapter.on("leave-room", (room: string) => {
    if (room.startsWith(USER_ROOM_PREFIX)) index.registered -= 1;
  });
  const firstNames = (set: Set<string>, strip: number) => {
    const out: string[] = [];
    for (const name of set) {
      if (out.length >= DASHBOARD_ID_LIMIT) break;
      out.push(name.slice(strip));
    }
    return out;
  };

  const sample = () => {
    metrics.connections.set(nsp.sockets.size);
    metrics.registeredSockets.set(index.registered);
    metrics.users.set(index.userRooms.size);
    metrics.rooms.set(index.otherRooms.size);
    metrics.authPoolQueue.set(deps.authQueue());
  };

  return {
    counts: () => ({ users: index.userRooms.size, rooms: index.otherRooms.size }),
    async metricsAnswer() {
      sample();
      flushOutgoing?.();
      return {
        pid: process.pid,
        metrics: (await registry.getMetricsAsJSON()) as unknown as MetricsJson,
      };
    },

    async dashboardAnswer(q) {
      const users = index.userRooms.size;
      const rooms = index.otherRooms.size;
      const mem = process.memoryUsage();
      return {
        worker: slot,
        pid: process.pid,
        connections: nsp.sockets.size,
        registeredSockets: index.registered,
        users,
        ...(users <= DASHBOARD_ID_LIMIT
          ? { userIds: firstNames(index.userRooms, USER_ROOM_PREFIX.length) }
          : {}),
        rooms,
        ...(rooms <= DASHBOARD_ID_LIMIT ? { roomNames: firstNames(index.otherRooms, 0) } : {}),
        lagMs: deps.lagMs(),
        elu,
        rssBytes: mem.rss,
        heapUsedBytes: mem.heapUsed,
        uptimeSeconds: Math.round(process.uptime()),
        totals: await rateTotals(),
        logs: deps.logs.since(q.logsAfter[String(process.pid)] ?? 0, 100),
      };
    },

    roomsPage(q) {
      // The first `limit` names after the cursor without sorting every room:
      // a sorted window of at most `limit` names, in one pass over this
      // worker's rooms (socket rooms are never visited).
      const top: string[] = [];
      let matching = 0;
      const visit = (name: string) => {
        if (q.prefix && !name.startsWith(q.prefix)) return;
        matching += 1;
        if (q.after !== undefined && name <= q.after) return;
        if (top.length === q.limit && name >= top[top.length - 1]!) return;
        let lo = 0;
        let hi = top.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (top[mid]! < name) lo = mid + 1;
          else hi = mid;
        }
        top.splice(lo, 0, name);
        if (top.length > q.limit) top.pop();
      };
      for (const name of index.otherRooms) visit(name);
      if (q.userRooms) for (const name of index.userRooms) visit(name);
      return {
        rooms: top.map((name) => [name, adapter.rooms.get(name)?.size ?? 0]),
        total: matching,
      };
    },

    stop() {
      clearInterval(timer);
    },
  };
}
