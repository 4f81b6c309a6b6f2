import type { ErrorBody } from "../shared/errors.js";
import type { ClientErrorCode } from "./client-error.js";

/** A successful ack: forwarded events answer `{ ok, data }`, built-ins `{ ok, ...fields }`. */
export type AckLike = { ok: true } & Record<string, unknown>;

export function isAck(v: unknown): v is AckLike | { ok: false; error: ErrorBody } {
  return typeof v === "object" && v !== null && typeof (v as { ok?: unknown }).ok === "boolean";
}

/** The error of a refusing ack; a malformed ack counts as INTERNAL. */
export function errorOf(ack: unknown): {
  code: ClientErrorCode;
  message: string;
  retryAfter?: number;
} {
  if (isAck(ack) && ack.ok === false && typeof ack.error?.code === "string") return ack.error;
  return { code: "INTERNAL", message: "the server sent a malformed ack" };
}
