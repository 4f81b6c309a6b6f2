import type {
  IdemClaimResult,
  OfflinePutResult,
  OfflineTakeResult,
  StoreOp,
  WorkerToPrimary,
} from "../../shared/ipc.js";
import { isPrimaryToWorker } from "../../shared/ipc.js";
import { type DeliveryStore, nothingTaken } from "./delivery-store.js";

/**
 * The delivery store of a host without Redis: a thin IPC client of the
 * stores in the primary (src/primary/delivery-stores.ts). The primary answers
 * operations one at a time, which is what makes `take` and `claim` atomic
 * across workers.
 */
export function createPrimaryStore(deps: {
  send(msg: WorkerToPrimary): void;
  timeoutMs: number;
}): DeliveryStore {
  let nextId = 1;
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  const onMessage = (msg: unknown) => {
    if (!isPrimaryToWorker(msg) || msg.t !== "ss:store-result") return;
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(msg.error));
    else p.resolve(msg.result);
  };
  process.on("message", onMessage);

  const call = <T>(op: StoreOp): Promise<T> => {
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      // Guards a primary that is gone; it answers in microseconds otherwise.
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`store operation ${op.op} timed out`));
      }, deps.timeoutMs);
      pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      deps.send({ t: "ss:store", id, op });
    });
  };

  return {
    kind: "primary",
    put: (userIds, message) =>
      call<OfflinePutResult>({ op: "offline-put", userIds: [...userIds], message }),
    async take(userId) {
      const r = await call<OfflineTakeResult>({ op: "offline-take", userId });
      const leaseId = r.leaseId;
      if (leaseId === undefined) return { ...nothingTaken, expired: r.expired };
      let confirmed = 0;
      return {
        messages: r.messages,
        expired: r.expired,
        // The primary's lease holds what is not confirmed yet: counts are sent as increments.
        async confirm(written = r.messages.length) {
          if (written <= confirmed) return;
          await call<void>({ op: "offline-confirm", leaseId, count: written - confirmed });
          confirmed = written;
        },
        restore: (written = 0) =>
          call<void>({
            op: "offline-restore",
            leaseId,
            written: Math.max(0, written - confirmed),
          }),
      };
    },
    claim: (key, id, fingerprint) =>
      call<IdemClaimResult>({ op: "idem-claim", key, id, fingerprint }),
    release: (key, id) => call<void>({ op: "idem-release", key, id }),
    async close() {
      process.off("message", onMessage);
    },
  };
}
