import type { Query, QueryReply, WorkerToPrimary } from "../shared/ipc.js";
import { isPrimaryToWorker } from "../shared/ipc.js";

/**
 * The worker's side of cluster queries: ask the primary to put a query to
 * every worker (this one included) and wait for the merged replies.
 */
export interface ClusterResult {
  replies: QueryReply[];
  missing: number[];
  /** With REDIS_URL: other hosts that did not answer in time, or not whole. */
  missingHosts?: string[];
}

export interface ClusterClient {
  query(q: Query, timeoutMs: number): Promise<ClusterResult>;
  send(msg: WorkerToPrimary): void;
}

export function createClusterClient(): ClusterClient {
  let nextId = 1;
  const pending = new Map<number, (r: ClusterResult) => void>();
  process.on("message", (msg: unknown) => {
    if (!isPrimaryToWorker(msg) || msg.t !== "ss:query-result") return;
    const done = pending.get(msg.id);
    if (!done) return;
    pending.delete(msg.id);
    done({ replies: msg.replies, missing: msg.missing });
  });
  const send = (msg: WorkerToPrimary) => {
    if (process.connected) process.send?.(msg);
  };
  return {
    send,
    query(q, timeoutMs) {
      const id = nextId++;
      return new Promise((resolve) => {
        // The primary answers within timeoutMs; this guards a primary that is gone.
        const guard = setTimeout(() => {
          pending.delete(id);
          resolve({ replies: [], missing: [-1] });
        }, timeoutMs + 1_000);
        pending.set(id, (r) => {
          clearTimeout(guard);
          resolve(r);
        });
        send({ t: "ss:query", id, q, timeoutMs });
      });
    },
  };
}
