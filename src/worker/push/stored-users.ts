import type { Logger } from "pino";
import { userRoom } from "../../shared/events.js";
import type { GatewayServer } from "../gateway/gateway.js";
import type { WorkerChannel } from "../ipc-channel.js";

/**
 * Which users have messages in the host's offline store (the primary's),
 * kept in every worker so that `register` asks the primary only for a user
 * who has some: a register burst of users with nothing stored costs no
 * round trip. The primary tells every worker as a user's queue appears
 * (a push stored it, a lease came back) or goes (taken, expired), and a
 * starting worker loads the whole set before it reports ready; until then,
 * or if loading failed, every register asks, as before.
 *
 * Why no stored message can be missed by a socket that registers here —
 * the race of a push that found the user offline and stores it while the
 * user registers. The primary sends `ss:stored-users` before it answers the
 * put, and this worker handles its messages in order. `register` joins the
 * user's room first and then consults the set. Either
 *   - the notice was handled before the consultation: the user is in the
 *     set (or was taken off because someone took or expired the message)
 *     and the register takes the messages; or
 *   - it was handled after the join: then the user's room is here when the
 *     notice arrives, and this worker takes the messages itself and emits
 *     them to the user (`onRegisteredStored`).
 * The join comes first, so one of the two always holds (both may: a take is
 * atomic in the store, so one of them gets the messages). The same covers
 * a lease given back (a socket left mid-replay, a worker died): a socket of
 * the user registered here meanwhile gets the messages at once. Only a
 * "stored" heard late could lose a message, and none is: the primary sends
 * it before answering the put, and a worker that was not started yet has
 * it in the set it loads. A user kept in the set too long costs a round trip.
 */

export interface StoredUsers {
  /** False only when the set is known and the user has nothing queued in the primary. */
  mayHave(userId: string): boolean;
  /** Loads the whole set from the primary; false when it could not (every user then "may have"). */
  load(timeoutMs: number): Promise<boolean>;
  close(): void;
}

export function createStoredUsers(deps: {
  io: GatewayServer;
  primary: Pick<WorkerChannel, "on" | "call">;
  log: Logger;
  /** Users just stored for who have a registered socket here: take and deliver now. */
  onRegisteredStored(userIds: string[]): void;
}): StoredUsers {
  const { io, primary } = deps;
  const users = new Set<string>();
  let known = false;

  const stop = primary.on("ss:stored-users", ({ changes }) => {
    const here: string[] = [];
    for (const [userId, stored] of changes) {
      if (!stored) {
        users.delete(userId);
        continue;
      }
      users.add(userId);
      if (io.of("/").adapter.rooms.has(userRoom(userId))) here.push(userId);
    }
    if (here.length > 0) deps.onRegisteredStored(here);
  });

  return {
    mayHave: (userId) => !known || users.has(userId),
    async load(timeoutMs) {
      try {
        const r = await primary.call("ss:stored-users-all", {}, timeoutMs);
        // Notices that came before this answer are in it; later ones follow it.
        users.clear();
        for (const u of r.users) users.add(u);
        known = true;
      } catch (err) {
        deps.log.warn(
          { err },
          "could not load the users with stored messages; every register asks",
        );
      }
      return known;
    },
    close: stop,
  };
}
