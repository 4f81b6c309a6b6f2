import type { Logger } from "pino";
import { REVOCATION_LEARNED_MESSAGE, REVOCATIONS_MESSAGE } from "../shared/protection-messages.js";
import { isRevocationEntry, RevocationList } from "../shared/revocation-list.js";
import type { Supervisor } from "./supervisor.js";

/**
 * The primary's copy of the revocation list, for workers that start after a
 * revocation was made (a crash restart, a rolling restart): it learns every
 * `revoke` query a worker puts to the host, and every entry a worker learned
 * from Redis, and hands the whole list to each worker the moment it reports
 * ready — before the balancer can give it a connection, since both travel
 * in order on the same IPC channel.
 */
export function keepRevocations(sup: Supervisor, log: Logger): { size(): number } {
  const list = new RevocationList();
  const now = () => Math.floor(Date.now() / 1000);

  sup.on("message", (_slot, msg) => {
    if (msg.t === "ss:query" && msg.q.kind === "revoke") {
      list.add(msg.q, now());
    } else if (
      msg.t === "ss:custom" &&
      msg.name === REVOCATION_LEARNED_MESSAGE &&
      isRevocationEntry(msg.data)
    ) {
      list.add(msg.data, now());
    }
  });
  sup.on("ready", (slot) => {
    const entries = list.entries(now());
    if (entries.length === 0) return;
    sup.send(slot, { t: "ss:custom", name: REVOCATIONS_MESSAGE, data: entries });
    log.debug({ slot, entries: entries.length }, "revocations handed to a starting worker");
  });
  const prune = setInterval(() => list.prune(now()), 60_000);
  prune.unref();
  return { size: () => list.size };
}
