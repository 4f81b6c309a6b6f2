import type { Query, QueryReply, QueryResult } from "../shared/ipc.js";
import { RpcError } from "../shared/ipc-rpc.js";
import type { IpcHub } from "./ipc-hub.js";
import type { Supervisor } from "./supervisor.js";

/**
 * Fans a query out to every live worker and collects the answers, for the
 * primary's own needs and for workers that ask (`ss:query`). It never waits
 * on a worker that is gone: a worker that exits while a query is open is
 * counted as missing at once, and one that is stuck is counted as missing
 * at the deadline. (The cluster adapter's own fetchSockets waits ~5 s on a
 * dead worker, which is why room and user queries do not use it.)
 */

export interface QueryHub {
  run(q: Query, timeoutMs: number): Promise<QueryResult>;
}

export function createQueryHub(deps: { ipc: IpcHub; sup: Supervisor }): QueryHub {
  const { ipc, sup } = deps;

  async function run(q: Query, timeoutMs: number): Promise<QueryResult> {
    const live = sup.liveSlots();
    const replies: QueryReply[] = [];
    const missing: number[] = [];
    await Promise.all(
      sup.slots.map(async ({ slot, ready }) => {
        if (!live.has(slot) || !ready) {
          missing.push(slot);
          return;
        }
        try {
          replies.push({ slot, result: await ipc.call(slot, "ss:local-query", { q }, timeoutMs) });
        } catch (err) {
          // The worker's own failure is its answer; silence or an exit makes it missing.
          if (err instanceof RpcError && err.code === "remote") {
            replies.push({ slot, result: null, error: err.message });
          } else {
            missing.push(slot);
          }
        }
      }),
    );
    missing.sort((a, b) => a - b);
    replies.sort((a, b) => a.slot - b.slot);
    return { replies, missing };
  }

  ipc.answer("ss:query", (_slot, { q, timeoutMs }) => run(q, timeoutMs));
  return { run };
}
