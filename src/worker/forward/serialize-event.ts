import { type AckError, ackError } from "../../shared/errors.js";
import type { ForwardedEvent } from "./backend-contract.js";

/**
 * The JSON body of a forwarded event, with the contract's key order:
 * `{ id, event, payload, userId, socketId, rooms, receivedAt }`.
 *
 * A client can send what JSON cannot carry: Socket.IO transports binary
 * attachments (Buffers), which JSON.stringify would silently turn into
 * `{ type: "Buffer", data: [...] }`. Those are refused with INVALID_PAYLOAD so
 * that the backend never sees a shape it did not ask for. A missing payload
 * becomes `null` (JSON.stringify would drop the key).
 */
export function serializeEvent(e: ForwardedEvent): { ok: true; body: string } | AckError {
  const ordered = {
    id: e.id,
    event: e.event,
    payload: e.payload === undefined ? null : e.payload,
    userId: e.userId,
    socketId: e.socketId,
    rooms: e.rooms,
    receivedAt: e.receivedAt,
  };
  const json = toForwardableJson(ordered);
  return json.ok ? { ok: true, body: json.json } : json;
}

/** JSON text of a client-supplied value, or INVALID_PAYLOAD for binary or unserialisable data. */
export function toForwardableJson(value: unknown): { ok: true; json: string } | AckError {
  const problem = inspect(value);
  if (problem === "binary") {
    return ackError(
      "INVALID_PAYLOAD",
      "binary payloads cannot be forwarded; send JSON (e.g. base64 strings)",
    );
  }
  if (problem === "too-complex") {
    return ackError("INVALID_PAYLOAD", "the payload has too many nested values to forward");
  }
  try {
    return { ok: true, json: JSON.stringify(value === undefined ? null : value) };
  } catch {
    return ackError("INVALID_PAYLOAD", "the payload cannot be serialised as JSON");
  }
}

/**
 * Does the value hold a Buffer, ArrayBuffer or typed array anywhere? A walk
 * with an explicit stack (a payload nested thousands deep must not overflow
 * it), cheaper than a JSON.stringify replacer, which calls back into JS for
 * every key. Visits at most `budget` nodes: past that the payload is
 * refused rather than walked forever.
 */
function inspect(value: unknown, budget = 1_000_000): "binary" | "too-complex" | undefined {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== "object" || v === null) continue;
    if (--budget < 0) return "too-complex";
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return "binary";
    if (Array.isArray(v)) {
      for (const item of v) stack.push(item);
    } else {
      for (const key in v) stack.push((v as Record<string, unknown>)[key]);
    }
  }
  return undefined;
}
