import type { ErrorCode } from "../shared/errors.js";

/**
 * Codes the client adds for what happens on its own side of the wire; every
 * other code comes from the server's table (src/shared/errors.ts).
 */
export const CLIENT_SIDE_CODES = {
  /** No answer within the request's `timeoutMs` (queueing and retries included). */
  TIMEOUT: "no answer in time",
  /** The connection dropped after the request was sent; it is not resent (docs/protocol.md). */
  DISCONNECTED: "the connection dropped before the answer arrived",
  /** The offline queue was full (see the overflow policy). */
  QUEUE_FULL: "the offline queue is full",
  /** The client was closed, or gave up (state `failed`). */
  CLOSED: "the client is closed",
} as const;
export type ClientSideCode = keyof typeof CLIENT_SIDE_CODES;
export type ClientErrorCode = ErrorCode | ClientSideCode;

/** Safe to send again: the server or backend did not act on the event. */
export const RETRYABLE_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  "BACKEND_UNAVAILABLE",
  "OVERLOADED",
  "RATE_LIMITED",
]);

/** A token problem: ask `getToken` once more, then give up. */
export const AUTH_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  "AUTH_MISSING",
  "AUTH_INVALID",
  "AUTH_EXPIRED",
  "AUTH_REVOKED",
]);

export interface ClientErrorExtra {
  retryAfter?: number | undefined;
  details?: unknown;
  attempts?: number;
  event?: string;
}

/** Match on `code`, not on the class: the codes are the contract. */
export class ClientError extends Error {
  override readonly name = "ClientError";
  readonly code: ClientErrorCode;
  /** Seconds, when the server gave a hint (RATE_LIMITED, OVERLOADED). */
  readonly retryAfter: number | undefined;
  readonly details: unknown;
  /** How many times the event was sent (0: never left the client). */
  readonly attempts: number;
  readonly event: string | undefined;

  constructor(code: ClientErrorCode, message: string, extra: ClientErrorExtra = {}) {
    super(message);
    this.code = code;
    this.retryAfter = extra.retryAfter;
    this.details = extra.details;
    this.attempts = extra.attempts ?? 0;
    this.event = extra.event;
  }
}
