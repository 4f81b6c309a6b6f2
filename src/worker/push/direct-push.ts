import { personalRoomOwner, userRoom } from "../../shared/events.js";
import type { DirectDelivery } from "../../shared/ipc.js";
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
 * room appearing on this worker means the user is here. So that a push sent
 * after a client's register ack always finds it, the ack waits until the
 * primary has applied the change (one IPC round trip, only for the first
 * socket of a user on a worker).
 *
 * Order: `push()` resolves once the queue holding it has been sent, and the
 * API answers only then; so a push sent after that answer, even through
 * another worker, reaches the primary behind it. A push queued here must not
 * be overtaken by a later push that goes through the adapter either; the
 * push service calls `flush()` before those.
 */

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

interface Batch {
  users: string[];
  waiters: (() => void)[];
}

export function createDirectPush(deps: {
  io: GatewayServer;
  primary: Pick<WorkerChannel, "on" | "send" | "call" | "notify">;
  /** A register ack never waits longer than this for the primary. */
  confirmTimeoutMs?: number;
}): DirectPush {
  const { io, primary } = deps;
  const confirmTimeoutMs = deps.confirmTimeoutMs ?? 1_000;
  const adapter = io.of("/").adapter;

  // Directory changes, sent once per loop turn.
  let changes: [string, boolean][] = [];
  let openBatch = 0;
  let nextBatch = 1;
  const batches = new Map<number, Batch>();
  /** Users whose arrival here the primary has not confirmed yet → batch id. */
  const unconfirmed = new Map<string, number>();
  let changesScheduled = false;

  const settle = (id: number) => {
    const b = batches.get(id);
    if (!b) return;
    batches.delete(id);
    for (const u of b.users) if (unconfirmed.get(u) === id) unconfirmed.delete(u);
    for (const w of b.waiters) w();
  };

  const sendChanges = () => {
    changesScheduled = false;
    if (changes.length === 0) return;
    const id = openBatch;
    openBatch = 0;
    const request = { changes };
    changes = [];
    if (id === 0) {
      // Only departures: nobody waits for the directory to apply them.
      primary.notify("ss:users", request);
      return;
    }
    // Settled by the primary's answer, by the timeout, or at once if the channel closes.
    const done = () => settle(id);
    primary.call("ss:users", request, confirmTimeoutMs).then(done, done);
  };

  const change = (room: string, present: boolean) => {
    const userId = personalRoomOwner(room);
    if (userId === undefined) return;
    changes.push([userId, present]);
    if (present) {
      if (openBatch === 0) {
        openBatch = nextBatch++;
        batches.set(openBatch, { users: [], waiters: [] });
      }
      batches.get(openBatch)!.users.push(userId);
      unconfirmed.set(userId, openBatch);
    } else {
      unconfirmed.delete(userId);
    }
    if (!changesScheduled) {
      changesScheduled = true;
      setImmediate(sendChanges);
    }
  };
  const onCreate = (room: string) => change(room, true);
  const onDelete = (room: string) => change(room, false);
  adapter.on("create-room", onCreate);
  adapter.on("delete-room", onDelete);

  // Pushes for other workers, sent once per loop turn.
  let outgoing: DirectDelivery[] = [];
  let sent: Promise<void> | undefined;
  let markSent: (() => void) | undefined;
  const flush = () => {
    if (outgoing.length > 0) {
      primary.send({ t: "ss:route", items: outgoing });
      outgoing = [];
    }
    markSent?.();
    sent = undefined;
    markSent = undefined;
  };

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
      outgoing.push(d);
      if (!sent) {
        sent = new Promise<void>((resolve) => {
          markSent = resolve;
        });
        setImmediate(flush);
      }
      return sent;
    },
    flush,
    hooks: {
      beforeRegisterAck: (_socket, userId) => {
        const id = unconfirmed.get(userId);
        const b = id === undefined ? undefined : batches.get(id);
        if (!b) return undefined;
        return new Promise<undefined>((resolve) => b.waiters.push(() => resolve(undefined)));
      },
    },
    close() {
      adapter.off("create-room", onCreate);
      adapter.off("delete-room", onDelete);
      stopDelivering();
      for (const id of [...batches.keys()]) settle(id);
    },
  };
}
