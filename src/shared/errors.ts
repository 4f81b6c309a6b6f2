/**
 * The one table of error codes. The same codes appear in HTTP error bodies,
 * in socket acks and in `connect_error` `err.data.code`. Callers match on
 * `code`, never on classes. test/errors.test.ts fails when a code here is
 * missing from docs/http-api.md. `connect` is the `err.message` of a refused
 * handshake with that code (`connect_error`).
 */
export const ERRORS = {
  // Handshake (connect_error)
  AUTH_MISSING: { status: 401, message: "no token in the handshake", connect: "unauthorized" },
  AUTH_INVALID: { status: 401, message: "the token is not valid", connect: "unauthorized" },
  AUTH_EXPIRED: { status: 401, message: "the token has expired", connect: "unauthorized" },
  AUTH_REVOKED: { status: 401, message: "the token has been revoked", connect: "unauthorized" },
  OVERLOADED: {
    status: 503,
    message: "the server is overloaded, retry later",
    connect: "overloaded",
  },
  // Socket events (acks)
  NOT_REGISTERED: { status: 409, message: "register first" },
  INVALID_PAYLOAD: { status: 400, message: "the payload is not valid" },
  RATE_LIMITED: { status: 429, message: "too many requests, slow down", connect: "rate limited" },
  FORBIDDEN: { status: 403, message: "not allowed", connect: "forbidden" },
  BACKEND_UNAVAILABLE: { status: 503, message: "the backend is unavailable" },
  BACKEND_TIMEOUT: { status: 504, message: "the backend did not answer in time" },
  BACKEND_REJECTED: { status: 502, message: "the backend rejected the event" },
  FORWARDING_DISABLED: { status: 501, message: "event forwarding is not configured" },
  // HTTP API
  VALIDATION_FAILED: { status: 400, message: "the request is not valid" },
  UNAUTHORIZED: { status: 401, message: "missing or invalid credentials" },
  NOT_FOUND: { status: 404, message: "no such resource" },
  METHOD_NOT_ALLOWED: { status: 405, message: "method not allowed on this path" },
  CONFLICT: { status: 409, message: "conflict" },
  PAYLOAD_TOO_LARGE: { status: 413, message: "the request body is too large" },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: "the body must be application/json" },
  SHUTTING_DOWN: {
    status: 503,
    message: "the server is shutting down",
    connect: "shutting down",
  },
  INTERNAL: { status: 500, message: "internal error" },
} as const satisfies Record<string, { status: number; message: string; connect?: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** `err.message` of a handshake refused with `code` ("unauthorized" for the AUTH_* codes). */
export function connectMessage(code: ErrorCode): string {
  const e = ERRORS[code];
  return "connect" in e ? e.connect : "unauthorized";
}

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: unknown;
  /** Seconds; set with RATE_LIMITED and OVERLOADED. */
  retryAfter?: number;
}

/** The error half of an ack: `{ ok: false, error: { code, message } }`. */
export interface AckError {
  ok: false;
  error: ErrorBody;
}

export function ackError(
  code: ErrorCode,
  message?: string,
  extra?: { details?: unknown; retryAfter?: number },
): AckError {
  return { ok: false, error: { code, message: message ?? ERRORS[code].message, ...extra } };
}

/** An error that carries a contract code; thrown inside the server, mapped at the edge. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;
  readonly retryAfter: number | undefined;

  constructor(
    code: ErrorCode,
    message?: string,
    extra?: { details?: unknown; retryAfter?: number },
  ) {
    super(message ?? ERRORS[code].message);
    this.code = code;
    this.details = extra?.details;
    this.retryAfter = extra?.retryAfter;
  }

  get status(): number {
    return ERRORS[this.code].status;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ERRORS, value);
}
