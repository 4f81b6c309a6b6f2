import type { Logger } from "pino";
import { RevocationList } from "../shared/revocation-list.js";
import type { IpcHub } from "./ipc-hub.js";
import type { Supervisor } from "./supervisor.js";

/**
 * The primary's copy of the revocation list, for workers that start after a
 * revocation was made (a crash restart, a rolling restart): it learns every
 * `revoke` query a worker puts to the host, and every entry a worker learned
 * from Redis, and hands the whole list to each worker the moment it reports
 * ready — before the balancer can give it a connection, since both travel
 * in order on the same IPC channel.
 */

/** The worker applies the list as it receives it; its answer only tells the log. */
const HANDOVER_TIMEOUT_MS = 10_000;

export function keepRevocations(deps: { ipc: IpcHub; sup: Supervisor; log: Logger }): void {
  const { ipc, log } = deps;
  const list = new RevocationList();
  const now = () => Math.floor(Date.now() / 1000);

  ipc.on("ss:query", (_slot, { q }) => {
    if (q.kind === "revoke") list.add(q, now());
  });
  ipc.on("ss:revocation-learned", (_slot, { entry }) => {
    list.add(entry, now());
  });
  deps.sup.on("ready", (slot) => {
    const entries = list.entries(now());
    if (entries.length === 0) return;
    ipc.call(slot, "ss:revocations", { entries }, HANDOVER_TIMEOUT_MS).then(
      ({ added }) =>
        log.debug(
          { slot, entries: entries.length, added },
          "revocations handed to a starting worker",
        ),
      (err: unknown) =>
        log.warn(
          { err, slot, entries: entries.length },
          "a starting worker did not take the revocations",
        ),
    );
  });
  const prune = setInterval(() => list.prune(now()), 60_000);
  prune.unref();
}
