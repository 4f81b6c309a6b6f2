import type http from "node:http";
import type { Logger } from "pino";
import type { ReplacedWorker } from "../../shared/ipc.js";
import type { LogRing } from "../../shared/log-ring.js";
import { metrics, primaryMetrics } from "../../shared/metrics.js";
import type { DashboardAnswer } from "../../shared/observability.js";
import type { QueryHub } from "../queries.js";
import type { Supervisor } from "../supervisor.js";

/**
 * The dashboard's live feed (Server-Sent Events from the primary). While at
 * least one dashboard is open, the primary asks every worker for one small
 * sample per second — counts, load, rate counters and new log lines — and
 * sends the same update to every open page. With no page open nothing is
 * polled, so an idle dashboard costs the workers nothing.
 */

export interface WorkerRow {
  worker: number;
  up: boolean;
  /** Missed the heartbeat: out of rotation, being killed and replaced. */
  hung?: boolean;
  pid?: number;
  connections?: number;
  registeredSockets?: number;
  users?: number;
  rooms?: number;
  lagMs?: number;
  elu?: number;
  rssBytes?: number;
  heapUsedBytes?: number;
  uptimeSeconds?: number;
}

export interface Headline {
  connections: number;
  users: number;
  /** False when some worker sent only a count: then users is a sum over workers. */
  usersExact: boolean;
  rooms: number;
  roomsExact: boolean;
  workers: number;
  workersTotal: number;
  messagesInPerSecond: number;
  messagesOutPerSecond: number;
  errorsPerSecond: number;
}

/** One chart sample: unix ms and per-second rates. */
export type Point = [t: number, inPerSecond: number, outPerSecond: number, errorsPerSecond: number];

export interface LogEntry {
  id: number;
  time: number;
  level: number;
  worker: string;
  msg: string;
  line: string;
}

export interface Update {
  headline: Headline;
  workers: WorkerRow[];
  /** Hung workers the primary replaced, newest last. */
  replaced: ReplacedWorker[];
  point: Point;
  logs: LogEntry[];
}

const HISTORY_POINTS = 600; // 10 minutes at one sample per second
const LOG_ENTRIES = 300;
const MAX_SUBSCRIBERS = 32;

export interface DashboardFeed {
  /** Starts an SSE stream on `res`; false when too many are open. */
  subscribe(req: http.IncomingMessage, res: http.ServerResponse): boolean;
  close(): void;
}

export function createDashboardFeed(deps: {
  hub: QueryHub;
  sup: Supervisor;
  log: Logger;
  primaryLogs: LogRing;
  intervalMs?: number;
  timeoutMs?: number;
}): DashboardFeed {
  const intervalMs = deps.intervalMs ?? 1_000;
  const timeoutMs = Math.min(deps.timeoutMs ?? 800, intervalMs);
  const subscribers = new Set<http.ServerResponse>();
  const history: Point[] = [];
  const logs: LogEntry[] = [];
  let logId = 0;
  let latest: Omit<Update, "logs" | "point"> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  // Rate state per worker process: totals and when they were read.
  const prev = new Map<number, { t: number; in: number; out: number; errors: number }>();
  // Log cursors per process (pid); the primary's own ring has pid 0's place.
  const cursors = new Map<number, number>();
  let primaryCursor = 0;
  let primaryErrors = { t: 0, n: 0 };

  const parseLine = (line: string, fallbackWorker: string): LogEntry | undefined => {
    try {
      const o = JSON.parse(line) as {
        time?: number;
        level?: number;
        msg?: string;
        worker?: number | string;
      };
      return {
        id: ++logId,
        time: typeof o.time === "number" ? o.time : Date.now(),
        level: typeof o.level === "number" ? o.level : 30,
        worker: o.worker === undefined ? fallbackWorker : String(o.worker),
        msg: typeof o.msg === "string" ? o.msg.slice(0, 500) : "",
        line: line.trimEnd(),
      };
    } catch {
      return undefined;
    }
  };

  async function tick(): Promise<void> {
    const { replies } = await deps.hub.run(
      { kind: "dashboard", logsAfter: Object.fromEntries(cursors) },
      timeoutMs,
    );
    const now = Date.now();
    const answers = replies.filter((r) => !r.error).map((r) => r.result as DashboardAnswer);
    const rows: WorkerRow[] = deps.sup.slots.map((s) => ({
      worker: s.slot,
      up: false,
      ...(s.hung ? { hung: true } : {}),
    }));
    const newLogs: LogEntry[] = [];
    let rateIn = 0;
    let rateOut = 0;
    let rateErrors = 0;
    const userIds = new Set<string>();
    const roomNames = new Set<string>();
    let usersExact = true;
    let roomsExact = true;
    let usersSum = 0;
    let roomsSum = 0;

    for (const a of answers) {
      rows[a.worker] = {
        worker: a.worker,
        up: true,
        pid: a.pid,
        connections: a.connections,
        registeredSockets: a.registeredSockets,
        users: a.users,
        rooms: a.rooms,
        lagMs: a.lagMs,
        elu: a.elu,
        rssBytes: a.rssBytes,
        heapUsedBytes: a.heapUsedBytes,
        uptimeSeconds: a.uptimeSeconds,
      };
      // A process seen for the first time only sets its baseline: its
      // totals since start are not "this second".
      const p = prev.get(a.pid);
      if (p && now > p.t) {
        const dt = (now - p.t) / 1000;
        rateIn += Math.max(0, a.totals.in - p.in) / dt;
        rateOut += Math.max(0, a.totals.out - p.out) / dt;
        rateErrors += Math.max(0, a.totals.errors - p.errors) / dt;
      }
      prev.set(a.pid, { t: now, ...a.totals });
      usersSum += a.users;
      roomsSum += a.rooms;
      if (a.userIds) for (const u of a.userIds) userIds.add(u);
      else usersExact = false;
      if (a.roomNames) for (const r of a.roomNames) roomNames.add(r);
      else roomsExact = false;
      cursors.set(a.pid, a.logs.seq);
      for (const line of a.logs.lines) {
        const e = parseLine(line, String(a.worker));
        if (e) newLogs.push(e);
      }
    }
    // Forget processes that are gone (a restarted worker has a new pid).
    const alive = new Set(deps.sup.slots.map((s) => s.worker?.process.pid));
    for (const pid of prev.keys()) {
      if (!alive.has(pid)) {
        prev.delete(pid);
        cursors.delete(pid);
      }
    }
    // The primary's own unexpected errors (a worker crash is one).
    const ownErrors = (await metrics.logMessages.get()).values.reduce(
      (n, v) => (v.labels.level === "error" || v.labels.level === "fatal" ? n + v.value : n),
      0,
    );
    if (primaryErrors.t > 0 && now > primaryErrors.t) {
      rateErrors += Math.max(0, ownErrors - primaryErrors.n) / ((now - primaryErrors.t) / 1000);
    }
    primaryErrors = { t: now, n: ownErrors };
    const own = deps.primaryLogs.since(primaryCursor, 100);
    primaryCursor = own.seq;
    for (const line of own.lines) {
      const e = parseLine(line, "primary");
      if (e) newLogs.push(e);
    }
    newLogs.sort((a, b) => a.time - b.time);
    logs.push(...newLogs);
    if (logs.length > LOG_ENTRIES) logs.splice(0, logs.length - LOG_ENTRIES);

    const point: Point = [now, round(rateIn), round(rateOut), round(rateErrors)];
    history.push(point);
    if (history.length > HISTORY_POINTS) history.splice(0, history.length - HISTORY_POINTS);

    latest = {
      headline: {
        connections: answers.reduce((n, a) => n + a.connections, 0),
        users: usersExact ? userIds.size : usersSum,
        usersExact,
        rooms: roomsExact ? roomNames.size : roomsSum,
        roomsExact,
        workers: answers.length,
        workersTotal: deps.sup.slots.length,
        messagesInPerSecond: point[1],
        messagesOutPerSecond: point[2],
        errorsPerSecond: point[3],
      },
      workers: rows,
      replaced: deps.sup.replaced,
    };
    broadcast("update", { ...latest, point, logs: newLogs } satisfies Update);
  }

  const round = (n: number) => Math.round(n * 100) / 100;

  function send(res: http.ServerResponse, event: string, data: unknown): void {
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  function broadcast(event: string, data: unknown): void {
    // Serialize once for every open page.
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const res of subscribers) res.write(frame);
  }

  function schedule(delay: number): void {
    if (closed || subscribers.size === 0 || timer) return;
    timer = setTimeout(() => {
      const started = Date.now();
      tick()
        .catch((err: unknown) => deps.log.warn({ err }, "dashboard sample failed"))
        .finally(() => {
          timer = undefined;
          schedule(Math.max(0, intervalMs - (Date.now() - started)));
        });
    }, delay);
  }

  return {
    subscribe(_req, res) {
      if (closed || subscribers.size >= MAX_SUBSCRIBERS) return false;
      res.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      });
      res.write("retry: 2000\n\n");
      send(res, "snapshot", { history, logs, ...(latest ?? {}) });
      subscribers.add(res);
      primaryMetrics.dashboardClients.set(subscribers.size);
      const drop = () => {
        subscribers.delete(res);
        primaryMetrics.dashboardClients.set(subscribers.size);
      };
      res.on("close", drop);
      res.on("error", drop);
      schedule(0);
      return true;
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const res of subscribers) res.end();
      subscribers.clear();
      primaryMetrics.dashboardClients.set(0);
    },
  };
}
