import type { Query, QueryResult } from "../shared/ipc.js";
import type { WorkerChannel } from "./ipc-channel.js";

/**
 * The worker's side of cluster queries: ask the primary to put a query to
 * every worker (this one included) and wait for the merged replies.
 */
export interface ClusterResult extends QueryResult {
  /** With REDIS_URL: other hosts that did not answer in time, or not whole. */
  missingHosts?: string[];
}

export interface ClusterClient {
  query(q: Query, timeoutMs: number): Promise<ClusterResult>;
}

export function createClusterClient(channel: Pick<WorkerChannel, "call">): ClusterClient {
  return {
    query: (q, timeoutMs) =>
      // The primary answers within timeoutMs; the margin guards a primary that is gone.
      channel
        .call("ss:query", { q, timeoutMs }, timeoutMs + 1_000)
        .catch(() => ({ replies: [], missing: [-1] })),
  };
}
