import { userRoom } from "../../shared/events.js";
import type { Query } from "../../shared/ipc.js";
import type { ClusterResult } from "../cluster-client.js";
import type { GatewayServer } from "../gateway/gateway.js";

/**
 * Which of these users have a registered socket anywhere? Decides whether a
 * push with `offline: "store"` is delivered or stored.
 *
 * A cluster query: every worker answers for its own sockets. On one host
 * the primary fans it out (a dead worker is skipped at once: it has no
 * sockets left); with REDIS_URL the hosts-aware cluster client asks every
 * host too. A worker or host that does not answer in time counts as having
 * no socket for them: the message is stored, which is what its user needs
 * if that host is really gone, and at worst a duplicate if it is not.
 */

/** The wire name from before room presence existed: hosts of both versions still answer each other. */
export const ONLINE_USERS_QUERY = "delivery:presence";

export type OnlineUsers = (userIds: readonly string[]) => Promise<Set<string>>;

/** The per-worker half: which of these users have a socket on this worker. */
export function localOnlineUsers(io: GatewayServer) {
  return (args: unknown): string[] => {
    const ids = (args as { userIds?: unknown } | null)?.userIds;
    if (!Array.isArray(ids)) return [];
    const rooms = io.of("/").adapter.rooms;
    return ids.filter((u): u is string => typeof u === "string" && !!rooms.get(userRoom(u))?.size);
  };
}

export function createOnlineUsers(deps: {
  cluster: { query(q: Query, timeoutMs: number): Promise<ClusterResult> };
  timeoutMs: number;
}): OnlineUsers {
  return async (userIds) => {
    if (userIds.length === 0) return new Set();
    const r = await deps.cluster.query(
      { kind: "custom", name: ONLINE_USERS_QUERY, args: { userIds } },
      deps.timeoutMs,
    );
    const online = new Set<string>();
    for (const reply of r.replies) {
      if (reply.error || !Array.isArray(reply.result)) continue;
      for (const u of reply.result as string[]) online.add(u);
    }
    return online;
  };
}
