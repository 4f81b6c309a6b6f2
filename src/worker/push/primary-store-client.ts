import type { StoreOp, StoreResults } from "../../shared/ipc.js";
import type { WorkerChannel } from "../ipc-channel.js";
import { type DeliveryStore, nothingTaken } from "./delivery-store.js";
import type { StoredUsers } from "./stored-users.js";

/**
 * The delivery store of a host without Redis: a thin IPC client of the
 * stores in the primary (src/primary/delivery-stores.ts). The primary answers
 * operations one at a time, which is what makes `take` and `claim` atomic
 * across workers. A `take` for a user the worker knows has nothing stored
 * (stored-users.ts) answers at once, without asking.
 */
export function createPrimaryStoreClient(deps: {
  primary: Pick<WorkerChannel, "call">;
  /** Guards a primary that is gone; it answers in microseconds otherwise. */
  timeoutMs: number;
  stored?: Pick<StoredUsers, "mayHave">;
}): DeliveryStore {
  const call = <O extends StoreOp>(op: O) =>
    deps.primary.call("ss:store", { op }, deps.timeoutMs) as Promise<StoreResults[O["op"]]>;

  return {
    kind: "primary",
    put: (userIds, message) => call({ op: "offline-put", userIds: [...userIds], message }),
    async take(userId) {
      if (deps.stored && !deps.stored.mayHave(userId)) return nothingTaken;
      const r = await call({ op: "offline-take", userId });
      const leaseId = r.leaseId;
      if (leaseId === undefined) return { ...nothingTaken, expired: r.expired };
      let confirmed = 0;
      return {
        messages: r.messages,
        expired: r.expired,
        // The primary's lease holds what is not confirmed yet: counts are sent as increments.
        async confirm(written = r.messages.length) {
          if (written <= confirmed) return;
          await call({ op: "offline-confirm", leaseId, count: written - confirmed });
          confirmed = written;
        },
        restore: async (written = 0) => {
          await call({ op: "offline-restore", leaseId, written: Math.max(0, written - confirmed) });
        },
      };
    },
    claim: (key, id, fingerprint) => call({ op: "idem-claim", key, id, fingerprint }),
    release: async (key, id) => {
      await call({ op: "idem-release", key, id });
    },
    async close() {},
  };
}
