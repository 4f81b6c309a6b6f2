import { personalRoomOwner, userRoom } from "../../shared/events.js";
import { type DirectDelivery, hostClock } from "../../shared/ipc.js";
import type { GatewayHooks, GatewayServer } from "../gateway/gateway.js";
import type { WorkerChannel } from "../ipc-channel.js";

/**
 * Pushes to users on one host without relaying them to every worker.
 *
 * The cluster adapter sends every broadcast through the primary to all other
 * workers, even a push for one user who lives on one worker; at high push
 * rates the primary and the IPC channels become the bottleneck. Here a push
 * to users is emitted at once to their sockets on this worker, and queued for
 * the primary, which forwards it only to the workers that hold the users
 * (src/primary/user-directory.ts). The queue is sent once per event-loop turn
 * (setImmediate), so a burst of pushes costs one IPC message, not one each.
 *
 * The directory learns from the adapter's own room events: a `user:<id>`
 * room appearing on this worker means the user is here (`ss:users`, sent
 * once per loop turn). The register ack does not wait for the primary to
 * apply it; what that wait guaranteed — a push sent after the ack always
 * finds the new socket, even when it reaches the primary before the news
 * of the user does (two IPC channels, read in no fixed order) — is kept by
 * time instead: each change carries the moment of the join and each push
 * the moment it was emitted here, on the host's one monotonic clock
 * (`hostClock`). A push sent after the ack was emitted after the join. The
 * primary keeps the pushes it routed in the last few seconds and, when it
 * learns that a user arrived on a worker, sends that worker those for the
 * user emitted after the join that did not go there. Pushes from before the
 * join are not sent (as before: a push reaches the sockets of that moment).
 *
 * Order: `push()` resolves once the primary has forwarded the queue holding
 * it to the workers holding its users (`ss:routed`, one per queue, in
 * order), and the API answers only then. So a push sent after that answer
 * through another worker — which takes its connection itself, not through
 * the primary — finds this one already in that worker's IPC channel, read
 * before the later request's bytes. A push queued here must not
 * be overtaken by a later push that goes through the adapter either; the
 * push service calls `flush()` before those.
 */

/** Longest wait for the primary's `ss:routed` before the API answers anyway. */
const ROUTED_TIMEOUT_MS = 1_000;

export interface DirectPush {
  /**
   * Emits to the users' sockets here now and queues the push for the other
   * workers; resolves once the queue has been sent to the primary.
   */
  push(d: DirectDelivery): Promise<void>;
  /** Sends the queued pushes now. */
  flush(): void;
  hooks: GatewayHooks;
  close(): void;
}

export function createDirectPush(deps: {
  io: GatewayServer;
  primary: Pick<WorkerChannel, "on" | "send">;
}): DirectPush {
  const { io, primary } = deps;
  const adapter = io.of("/").adapter;

  // Directory changes, sent once per loop turn; nobody waits for them.
  let changes: [string, boolean, number][] = [];
  const sendChanges = () => {
    if (changes.length === 0) return;
    primary.send({ t: "ss:users", changes });
    changes = [];
  };
  const change = (room: string, present: boolean) => {
    const userId = personalRoomOwner(room);
    if (userId === undefined) return;
    if (changes.length === 0) setImmediate(sendChanges);
    changes.push([userId, present, hostClock()]);
  };
  const onCreate = (room: string) => change(room, true);
  const onDelete = (room: string) => change(room, false);
  adapter.on("create-room", onCreate);
  adapter.on("delete-room", onDelete);

  // Pushes for other workers, sent once per loop turn.
  let outgoing: DirectDelivery[] = [];
  let sent: Promise<void> | undefined;
  let markSent: (() => void) | undefined;
  // Queues sent and not yet confirmed, oldest first (the channel keeps order).
  const unconfirmed: (() => void)[] = [];
  const flush = () => {
    const done = markSent;
    sent = undefined;
    markSent = undefined;
    if (outgoing.length === 0 || !primary.send({ t: "ss:route", items: outgoing })) {
      outgoing = [];
      done?.();
      return;
    }
    outgoing = [];
    if (!done) return;
    // A primary that does not confirm in time (stopping, stuck) does not hold the API.
    const timer = setTimeout(() => {
      const i = unconfirmed.indexOf(confirm);
      if (i !== -1) unconfirmed.splice(i, 1);
      done();
    }, ROUTED_TIMEOUT_MS);
    const confirm = () => {
      clearTimeout(timer);
      done();
    };
    unconfirmed.push(confirm);
  };
  const stopConfirming = primary.on("ss:routed", () => unconfirmed.shift()?.());

  const emitLocal = (d: DirectDelivery) => {
    const rooms: string[] = [];
    for (const u of d.users) {
      const room = userRoom(u);
      if (adapter.rooms.has(room)) rooms.push(room);
    }
    if (rooms.length === 0) return;
    let op = io.local.to(rooms);
    if (d.except?.length) op = op.except(d.except.map(userRoom));
    if (d.volatile) op = op.volatile;
    op.emit(d.event, d.payload);
  };

  const stopDelivering = primary.on("ss:deliver", ({ items }) => {
    for (const d of items) emitLocal(d);
  });

  return {
    push(d) {
      emitLocal(d);
      outgoing.push({ ...d, at: hostClock() });
      if (!sent) {
        sent = new Promise<void>((resolve) => {
          markSent = resolve;
        });
        setImmediate(flush);
      }
      return sent;
    },
    flush,
    // The register ack waits for nothing here (see above).
    hooks: {},
    close() {
      adapter.off("create-room", onCreate);
      adapter.off("delete-room", onDelete);
      stopDelivering();
      stopConfirming();
      for (const confirm of unconfirmed.splice(0)) confirm();
    },
  };
}
