import type { Logger } from "pino";
import type { Config } from "../shared/config.js";
import type { StoreOp, StoreResult } from "../shared/ipc.js";
import { metrics } from "../shared/metrics.js";
import { IdempotencyStore } from "./idempotency-store.js";
import { OfflineStore } from "./offline-store.js";
import type { IpcHub } from "./ipc-hub.js";
import type { Supervisor } from "./supervisor.js";

/**
 * The primary's side of the delivery stores: answers `ss:store` requests
 * from the workers, gives a dead worker's leases back, and sweeps expired
 * entries. The primary outlives every worker, which is what makes these
 * stores survive a worker crash on a host without Redis.
 *
 * Every worker is told, as it happens, which users' offline queues appear
 * and go (`ss:stored-users`), and a starting worker asks for the whole set
 * (`ss:stored-users-all`): a `register` of a user with nothing stored then
 * needs no round trip here. The changes are sent before the answer to the
 * operation that made them, and the channel keeps order, so a worker has
 * heard of a message before anything that follows its storing reaches it
 * (src/worker/push/stored-users.ts says why that is enough).
 */

const SWEEP_INTERVAL_MS = 5_000;
const LEASE_TIMEOUT_MS = 60_000;

export interface DeliveryStores {
  offline: OfflineStore;
  idempotency: IdempotencyStore;
  handle(slot: number, op: StoreOp): StoreResult;
  close(): void;
}

export function createDeliveryStores(
  cfg: Config,
  usersChanged?: (changes: [string, boolean][]) => void,
): Omit<DeliveryStores, "close"> {
  const offline = new OfflineStore(
    {
      maxPerUser: cfg.OFFLINE_MAX_PER_USER,
      maxTotal: cfg.OFFLINE_MAX_TOTAL,
      maxTotalBytes: cfg.OFFLINE_MAX_TOTAL_BYTES,
      leaseTimeoutMs: LEASE_TIMEOUT_MS,
    },
    {
      dropped: (n) => metrics.offlineDropped.inc({ reason: "user_limit" }, n),
      ...(usersChanged ? { usersChanged } : {}),
    },
  );
  const idempotency = new IdempotencyStore({
    windowMs: cfg.IDEMPOTENCY_WINDOW_SECONDS * 1_000,
    maxKeys: cfg.IDEMPOTENCY_MAX_KEYS,
  });
  const handle = (slot: number, op: StoreOp): StoreResult => {
    switch (op.op) {
      case "offline-put":
        return offline.put(op.userIds, op.message);
      case "offline-take":
        return offline.take(op.userId, slot);
      case "offline-confirm":
        offline.confirm(op.leaseId, op.count);
        return null;
      case "offline-restore":
        offline.restore(op.leaseId, op.written ?? 0);
        return null;
      case "idem-claim":
        return idempotency.claim(op.key, op.id, op.fingerprint);
      case "idem-release":
        idempotency.release(op.key, op.id);
        return null;
    }
  };
  return { offline, idempotency, handle };
}

export function attachDeliveryStores(deps: {
  ipc: IpcHub;
  sup: Supervisor;
  cfg: Config;
  log: Logger;
}): DeliveryStores {
  const { ipc, sup, cfg } = deps;
  const log = deps.log.child({ module: "delivery-stores" });
  // Sent at once, before the reply to the operation that caused them (see above).
  const stores = createDeliveryStores(cfg, (changes) =>
    ipc.broadcast({ t: "ss:stored-users", changes }),
  );

  ipc.answer("ss:store", (slot, { op }) => {
    try {
      return stores.handle(slot, op);
    } catch (err) {
      log.error({ err, op: op.op }, "store operation failed");
      throw err;
    }
  });
  ipc.answer("ss:stored-users-all", () => ({ users: stores.offline.users() }));
  sup.on("exit", (slot) => {
    const n = stores.offline.releaseOwner(slot);
    if (n > 0) log.warn({ slot, messages: n }, "worker exited during a replay; messages kept");
  });

  const sweep = setInterval(() => {
    // Expiries found by the sweep are counted here; those found on take, by the worker.
    const expired = stores.offline.sweep();
    if (expired > 0) metrics.offlineExpired.inc(expired);
    stores.idempotency.sweep();
  }, SWEEP_INTERVAL_MS);
  sweep.unref();

  return { ...stores, close: () => clearInterval(sweep) };
}
