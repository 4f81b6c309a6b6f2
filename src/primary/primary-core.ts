import type { Logger } from "pino";
import type { Config } from "../shared/config.js";
import type { LogRing } from "../shared/log-ring.js";
import { PRESENCE_COUNTS_QUERY, type PrimaryMessage } from "../shared/ipc.js";
import { inRoomList } from "../shared/names.js";
import { createDashboard } from "./dashboard/routes.js";
import { attachDeliveryStores } from "./delivery-stores.js";
import { createInternalHttp } from "./internal-http.js";
import { createIpcHub } from "./ipc-hub.js";
import { createMetricsAggregator } from "./metrics-aggregator.js";
import { createQueryHub } from "./queries.js";
import { keepRevocations } from "./revocation-keeper.js";
import { attachRoomHistory } from "./room-history.js";
import { attachRoomPresence } from "./room-presence.js";
import type { Supervisor } from "./supervisor.js";
import { attachUserDirectory } from "./user-directory.js";

/** Where the host is: what /ready and every worker's `ss:state` report. */
export interface HostState {
  draining: boolean;
  /** The ports are bound and the workers take connections on them. */
  listening: boolean;
  ports: { publicPort?: number; apiPort?: number };
}

/**
 * The primary's services over its workers, whatever runs the workers: the
 * IPC hub, cluster queries, the user directory, revocations, the delivery
 * stores, readiness, /metrics and the dashboard on the internal HTTP server,
 * and the state every worker is told (`ss:state`) whenever it changes.
 * run-primary.ts adds processes, ports, signals and supervision around it;
 * the one-process test harness (test/support/in-process.ts) a worker in the
 * same process.
 */
export function createPrimaryCore(deps: {
  cfg: Config;
  sup: Supervisor;
  log: Logger;
  recentLogs: LogRing;
}) {
  const { cfg, sup, log } = deps;
  const host: HostState = { draining: false, listening: false, ports: {} };
  // Every message from the workers goes through this one hub (src/primary/ipc-hub.ts).
  const ipc = createIpcHub(sup);
  // Cluster queries: the primary's own, and the ones workers ask it to fan out.
  const hub = createQueryHub({ ipc, sup });
  // Where each user's sockets are, so a push to a user reaches only those workers.
  attachUserDirectory({ ipc, sup });
  // Revocations outlive worker restarts (src/primary/revocation-keeper.ts).
  keepRevocations({ ipc, sup, log });
  // The host's offline queue and idempotency keys: here, so a worker crash loses nothing.
  const deliveryStores = attachDeliveryStores({ ipc, sup, cfg, log });
  // History rooms' counters and pushes (with Redis: while it is unreachable).
  attachRoomHistory({
    ipc,
    limits: { size: cfg.HISTORY_SIZE, ttlMs: cfg.HISTORY_TTL_S * 1_000 },
  });
  // Who is present in PRESENCE_ROOMS, host-wide; with Redis that lives in Redis (the workers').
  const roomPresence =
    cfg.PRESENCE_ROOMS.length > 0 && !cfg.redis
      ? attachRoomPresence({ ipc, sup, leaveDelayMs: cfg.PRESENCE_LEAVE_DELAY_MS, log })
      : undefined;

  /** With Redis the workers read the counts there: the first worker that answers. */
  const presenceCountsFromRedis = async (rooms: string[]): Promise<Record<string, number>> => {
    const { replies } = await hub.run(
      { kind: "custom", name: PRESENCE_COUNTS_QUERY, args: { rooms } },
      cfg.QUERY_TIMEOUT_MS,
    );
    const answer = replies.find((r) => !r.error && r.result && typeof r.result === "object");
    if (!answer) throw new Error("no worker answered");
    return answer.result as Record<string, number>;
  };

  const readiness = () => {
    const ready = sup.readySlots().length;
    const reasons: string[] = [];
    if (host.draining) reasons.push("draining");
    if (!host.listening) reasons.push("starting");
    // A rolling restart takes one worker out on purpose; the host still serves.
    const expected = sup.restarting ? cfg.WORKERS - 1 : cfg.WORKERS;
    if (ready < expected) reasons.push(`${ready} of ${cfg.WORKERS} workers ready`);
    const redisDown = sup.slots.filter((s) => s.load?.redis === "down");
    if (redisDown.length > 0) {
      reasons.push("redis unreachable");
      // Which part of the Redis tier, as a worker saw it (a shard failing over, a refused connection).
      const why = redisDown.find((s) => s.load?.redisReason)?.load?.redisReason;
      if (why) reasons.push(`redis: ${why}`);
    }
    return {
      ready: reasons.length === 0,
      reasons,
      details: { workers: { ready, total: cfg.WORKERS } },
    };
  };

  const internal = createInternalHttp({
    log,
    readiness,
    requestTimeoutMs: cfg.HTTP_REQUEST_TIMEOUT_MS,
  });
  const metricsAggregator = createMetricsAggregator({
    hub,
    ipc,
    sup,
    timeoutMs: cfg.QUERY_TIMEOUT_MS,
    log,
  });
  internal.route("/metrics", metricsAggregator.handle);
  const dashboard = createDashboard({
    token: cfg.dashboardToken,
    cfg,
    hub,
    sup,
    log,
    primaryLogs: deps.recentLogs,
    queryTimeoutMs: cfg.QUERY_TIMEOUT_MS,
    ...(cfg.PRESENCE_ROOMS.length > 0
      ? {
          presence: {
            isPresenceRoom: (room: string) => inRoomList(room, cfg.PRESENCE_ROOMS),
            counts: async (rooms: string[]) =>
              roomPresence ? roomPresence.counts(rooms) : presenceCountsFromRedis(rooms),
          },
        }
      : {}),
  });
  internal.route("/dashboard", dashboard.handle);

  let pushedReasons = "";
  let pushedAccepting = "";
  const accepting = () => (host.draining ? [] : sup.acceptingSlots());
  const pushState = () => {
    const r = readiness();
    pushedReasons = r.reasons.join("\n");
    const state: PrimaryMessage = {
      t: "ss:state",
      ready: r.ready,
      draining: host.draining,
      workers: cfg.WORKERS,
      reasons: r.reasons,
      readyWorkers: sup.readySlots().length,
      ...host.ports,
      replaced: sup.replaced,
      accepting: accepting(),
    };
    pushedAccepting = state.accepting.join();
    ipc.broadcast(state);
  };
  sup.on("ready", pushState);
  sup.on("exit", pushState);
  // Load reports can change readiness too (a worker's Redis down or back):
  // workers answer /ready on kept-alive connections, so they must hear of it.
  // And so can the slots taking new sessions, which a shedding worker passes its new sessions to.
  ipc.on("ss:load", () => {
    if (
      readiness().reasons.join("\n") !== pushedReasons ||
      accepting().join() !== pushedAccepting
    ) {
      pushState();
    }
  });

  return { host, ipc, hub, deliveryStores, internal, metricsAggregator, dashboard, pushState };
}
