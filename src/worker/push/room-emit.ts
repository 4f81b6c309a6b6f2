import { userRoom } from "../../shared/events.js";
import type { GatewayServer } from "../gateway/gateway.js";
import type { HistoryRooms } from "../history/history-rooms.js";
import type { PushTarget } from "./push-service.js";

/**
 * The emit of a push to rooms (or everyone) without acks, shared by the
 * plain path and the delivery pipeline: one adapter emit for the plain
 * rooms, and for the history rooms among them an append and a frame each
 * (src/worker/history/history-rooms.ts). A socket in a plain and a history
 * room of the push gets it once, from the history room, with its position.
 * Resolves with the fields the answer adds: `position` (one room) or
 * `positions` (room → position).
 */
export async function emitToRooms(
  io: GatewayServer,
  history: HistoryRooms | undefined,
  p: {
    kind: PushTarget;
    rooms: string[];
    event: string;
    payload: unknown;
    except?: string[] | undefined;
    volatile?: boolean | undefined;
  },
): Promise<Record<string, unknown>> {
  const everyone = p.kind === "broadcast";
  const toRooms = p.kind === "room" || p.kind === "rooms";
  const kept = toRooms && history ? p.rooms.filter(history.covers) : [];
  const plain = kept.length === 0 ? p.rooms : p.rooms.filter((r) => !history!.covers(r));
  if (everyone || plain.length > 0) {
    let op = everyone ? io.except([]) : io.to(plain);
    const except = [...(p.except ?? []).map(userRoom), ...kept];
    if (except.length) op = op.except(except);
    if (p.volatile) op = op.volatile;
    op.emit(p.event, p.payload);
  }
  if (kept.length === 0) return {};
  const positions = await history!.push({ ...p, rooms: kept });
  if (p.kind === "room") return { position: positions[0] };
  return { positions: Object.fromEntries(kept.map((room, i) => [room, positions[i]])) };
}
