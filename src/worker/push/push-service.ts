import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { userRoom } from "../../shared/events.js";
import { metrics } from "../../shared/metrics.js";
import type { PushRequest } from "../http/schemas.js";
import type { DeliveryPipeline } from "./pipeline.js";
import type { DirectPush } from "./direct-push.js";
import type { GatewayServer } from "../gateway/gateway.js";
import type { HistoryRooms } from "../history/history-rooms.js";
import { GatewayError } from "../../shared/errors.js";
import { emitToRooms } from "./room-emit.js";

/**
 * Delivers a validated push through the adapter, which reaches every worker
 * (and every host with Redis) — or, for plain pushes to users on one host,
 * through `direct` (only the workers holding them). Fire-and-forget: the
 * answer says the push was accepted, not that it arrived (options.ackTimeoutMs
 * is for that).
 */

export type PushTarget = "user" | "users" | "room" | "rooms" | "broadcast";

export interface PushResult {
  id: string;
  target: PushTarget;
  event: string;
  [extra: string]: unknown;
}

export function targetOf(req: PushRequest): { kind: PushTarget; rooms: string[] } {
  if (req.userId !== undefined) return { kind: "user", rooms: [userRoom(req.userId)] };
  if (req.userIds !== undefined) return { kind: "users", rooms: req.userIds.map(userRoom) };
  if (req.room !== undefined) return { kind: "room", rooms: [req.room] };
  if (req.rooms !== undefined) return { kind: "rooms", rooms: req.rooms };
  return { kind: "broadcast", rooms: [] };
}

export interface PushOptions {
  /** Runs once the push is emitted or stored, before any acks are awaited (batch ordering). */
  onDispatched?: () => void;
}

export interface PushService {
  push(req: PushRequest, opts?: PushOptions): Promise<PushResult>;
}

export function createPushService(deps: {
  io: GatewayServer;
  log: Logger;
  /** Acks, offline store, idempotency keys (create-delivery.ts). */
  delivery?: DeliveryPipeline;
  /** One host: pushes to users go only to the workers holding them. */
  direct?: DirectPush;
  /** HISTORY_ROOMS: positions, history and ordered delivery for those rooms. */
  history?: HistoryRooms;
}): PushService {
  const { io } = deps;
  return {
    async push(req, pushOpts) {
      const started = performance.now();
      const id = randomUUID();
      const { kind, rooms } = targetOf(req);
      if (deps.direct && (kind === "user" || kind === "users") && !deps.delivery?.wants(req)) {
        const sent = deps.direct.push({
          users: req.userId !== undefined ? [req.userId] : req.userIds!,
          event: req.event,
          payload: req.payload,
          ...(req.options?.except?.length ? { except: req.options.except } : {}),
          ...(req.options?.volatile ? { volatile: true } : {}),
        });
        // In order from here on (a batch may go on); answered once sent (see direct-push.ts).
        pushOpts?.onDispatched?.();
        metrics.pushEmitLatency.observe((performance.now() - started) / 1000);
        metrics.pushes.inc({ target: kind, outcome: "accepted" });
        await sent;
        return { id, target: kind, event: req.event };
      }
      // Pushes queued for other workers go first, so this one cannot overtake them.
      deps.direct?.flush();
      if (req.options?.ackTimeoutMs !== undefined && rooms.some((r) => deps.history?.covers(r))) {
        throw new GatewayError(
          "VALIDATION_FAILED",
          "ackTimeoutMs is not available for history rooms",
          {
            details: [
              { path: "options.ackTimeoutMs", message: "not with a room of HISTORY_ROOMS" },
            ],
          },
        );
      }
      if (deps.delivery?.wants(req)) {
        const result = await deps.delivery.push(req, { id, kind, rooms }, pushOpts?.onDispatched);
        metrics.pushes.inc({ target: kind, outcome: "accepted" });
        return result;
      }
      const positions = await emitToRooms(io, deps.history, {
        kind,
        rooms,
        event: req.event,
        payload: req.payload,
        except: req.options?.except,
        volatile: req.options?.volatile,
      });
      metrics.pushEmitLatency.observe((performance.now() - started) / 1000);
      metrics.pushes.inc({ target: kind, outcome: "accepted" });
      return { id, target: kind, event: req.event, ...positions };
    },
  };
}
