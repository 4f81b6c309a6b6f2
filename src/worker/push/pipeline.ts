import type { Logger } from "pino";
import type { Config } from "../../shared/config.js";
import { userRoom } from "../../shared/events.js";
import type { IdemClaimResult, StoredMessage } from "../../shared/ipc.js";
import { GatewayError } from "../../shared/errors.js";
import { metrics } from "../../shared/metrics.js";
import type { PushRequest } from "../http/schemas.js";
import type { GatewayServer } from "../gateway/gateway.js";
import type { PushResult, PushTarget } from "./push-service.js";
import { emitWithAcks } from "./acks.js";
import { requestFingerprint } from "./fingerprint.js";
import type { DeliveryStore } from "./delivery-store.js";
import type { OnlineUsers } from "./online-users.js";
import type { HistoryRooms } from "../history/history-rooms.js";
import { emitToRooms } from "./room-emit.js";

/**
 * Pushes with delivery options: `idempotencyKey`, `offline: "store"`,
 * `ackTimeoutMs`. Plain pushes never come here and stay fire-and-forget.
 *
 * Offline store, and the race it has to close: a user may register between
 * "is anyone online?" and "store it". So the push stores first and then
 * looks again; the register side joins the user's room first and then takes
 * the stored messages. Whichever order the four steps run in, either the
 * register's take finds the message, or the second look finds the socket
 * and this push takes and delivers it itself. Both takes are atomic in the
 * store, so the message is delivered once.
 */

export interface PushContext {
  id: string;
  kind: PushTarget;
  rooms: string[];
}

export interface DeliveryPipeline {
  /** Does this push need the delivery pipeline? */
  wants(req: PushRequest): boolean;
  /**
   * Delivers; `onDispatched` runs once the push has been emitted (or
   * stored), before acks are awaited, so a batch can keep its order without
   * waiting for each item's acks.
   */
  push(req: PushRequest, ctx: PushContext, onDispatched?: () => void): Promise<PushResult>;
}

/**
 * Takes what is stored for a user who has registered sockets and emits it to
 * them all (the user's room, on every worker); the take is atomic, so of two
 * that try, one delivers.
 */
export async function deliverStored(
  io: GatewayServer,
  store: DeliveryStore,
  userId: string,
): Promise<void> {
  const t = await store.take(userId);
  if (t.expired) metrics.offlineExpired.inc(t.expired);
  if (t.messages.length === 0) return;
  const room = io.to(userRoom(userId));
  for (const m of t.messages) room.emit(m.event, JSON.parse(m.payloadJson) as unknown);
  metrics.offlineReplayed.inc(t.messages.length);
  await t.confirm();
}

export function createDeliveryPipeline(deps: {
  io: GatewayServer;
  cfg: Config;
  log: Logger;
  store: DeliveryStore;
  onlineUsers: OnlineUsers;
  history?: HistoryRooms;
}): DeliveryPipeline {
  const { io, cfg, store, onlineUsers } = deps;
  const log = deps.log.child({ module: "delivery" });

  /** Stores for users found offline; returns how many copies were kept. */
  async function storeFor(users: string[], req: PushRequest, id: string) {
    const now = Date.now();
    const ttlSeconds = req.options?.ttlSeconds ?? cfg.OFFLINE_MAX_TTL_SECONDS;
    const message: StoredMessage = {
      id,
      event: req.event,
      payloadJson: JSON.stringify(req.payload),
      storedAt: now,
      expiresAt: now + ttlSeconds * 1_000,
    };
    try {
      const r = await store.put(users, message);
      if (r.stored) metrics.offlineStored.inc(r.stored);
      if (r.droppedOldest) metrics.offlineDropped.inc({ reason: "user_limit" }, r.droppedOldest);
      if (r.refused) metrics.offlineDropped.inc({ reason: "total_limit" }, r.refused);
      return { stored: r.stored, notStored: r.refused };
    } catch (err) {
      log.error({ err }, "could not store a push for offline users");
      metrics.offlineDropped.inc({ reason: "store_unavailable" }, users.length);
      return { stored: 0, notStored: users.length };
    }
  }

  /** The second look: users who registered meanwhile get what is stored for them now. */
  async function deliverToLateComers(users: string[]): Promise<void> {
    const back = await onlineUsers(users);
    for (const userId of back) await deliverStored(io, store, userId);
  }

  async function deliver(
    req: PushRequest,
    ctx: PushContext,
    dispatched: () => void,
  ): Promise<PushResult> {
    const opts = req.options ?? {};
    const except = opts.except ?? [];
    const result: PushResult = { id: ctx.id, target: ctx.kind, event: req.event };
    const everyone = ctx.kind === "broadcast";
    let rooms = ctx.rooms;
    let lateComers: Promise<void> | undefined;

    if (opts.offline === "store" && (ctx.kind === "user" || ctx.kind === "users")) {
      const skip = new Set(except);
      const users = [...new Set(req.userId !== undefined ? [req.userId] : req.userIds!)].filter(
        (u) => !skip.has(u),
      );
      const online = await onlineUsers(users);
      const offline = users.filter((u) => !online.has(u));
      // Only the users seen online get it live; the others get it from the store, once.
      rooms = users.filter((u) => online.has(u)).map(userRoom);
      result["stored"] = 0;
      if (offline.length > 0) {
        const s = await storeFor(offline, req, ctx.id);
        result["stored"] = s.stored;
        if (s.notStored) result["notStored"] = s.notStored;
        if (s.stored) {
          lateComers = deliverToLateComers(offline).catch((err: unknown) =>
            log.warn({ err }, "second look at who is online failed; the messages stay stored"),
          );
        }
      }
    }

    const reachesSomeone = everyone || rooms.length > 0;
    const exceptRooms = except.map(userRoom);
    if (opts.ackTimeoutMs !== undefined) {
      const acks = reachesSomeone
        ? emitWithAcks(
            io,
            { rooms: everyone ? [] : rooms, except: exceptRooms, volatile: opts.volatile === true },
            req.event,
            req.payload,
            opts.ackTimeoutMs,
          )
        : Promise.resolve({ delivered: 0, acked: 0 });
      dispatched();
      const [a] = await Promise.all([acks, lateComers]);
      if (a.acked) metrics.pushAcks.inc({ outcome: "acked" }, a.acked);
      if (a.delivered > a.acked)
        metrics.pushAcks.inc({ outcome: "timeout" }, a.delivered - a.acked);
      return { ...result, delivered: a.delivered, acked: a.acked };
    }

    const positions = reachesSomeone
      ? await emitToRooms(io, deps.history, {
          kind: ctx.kind,
          rooms,
          event: req.event,
          payload: req.payload,
          except,
          volatile: opts.volatile,
        })
      : {};
    dispatched();
    await lateComers;
    return { ...result, ...positions };
  }

  return {
    wants(req) {
      const o = req.options;
      return (
        o !== undefined &&
        (o.idempotencyKey !== undefined || o.ackTimeoutMs !== undefined || o.offline === "store")
      );
    },

    async push(req, ctx, onDispatched) {
      let done = false;
      const dispatched = () => {
        if (done) return;
        done = true;
        onDispatched?.();
      };
      try {
        const key = req.options?.idempotencyKey;
        if (key === undefined) return await deliver(req, ctx, dispatched);
        let claim: IdemClaimResult;
        const fingerprint = requestFingerprint(req);
        try {
          claim = await store.claim(key, ctx.id, fingerprint);
        } catch (err) {
          // Delivering twice beats not delivering: without the store, accept.
          log.warn({ err }, "idempotency store unreachable; push accepted unchecked");
          claim = { duplicate: false };
        }
        if (claim.duplicate) {
          // A backend bug that reuses a key must not lose the second message silently.
          if (claim.fingerprint !== undefined && claim.fingerprint !== fingerprint) {
            throw new GatewayError(
              "CONFLICT",
              `idempotencyKey "${key}" was used for a different request within the window`,
              {
                details: [
                  { path: "options.idempotencyKey", message: "reused for another request" },
                ],
              },
            );
          }
          metrics.pushDuplicates.inc();
          return { id: claim.originalId, target: ctx.kind, event: req.event, duplicate: true };
        }
        try {
          return { ...(await deliver(req, ctx, dispatched)), duplicate: false };
        } catch (err) {
          // The push did not go out: a retry with the same key must be able to.
          await store.release(key, ctx.id).catch(() => {});
          throw err;
        }
      } finally {
        dispatched();
      }
    },
  };
}
