import { randomUUID } from "node:crypto";
import type http from "node:http";
import { ERRORS, type ErrorCode } from "./errors.js";

/**
 * The contract's HTTP error body for plain `node:http` responses (the
 * primary's routes, the public port), the same shape the API's express app
 * sends: `{ error: { code, message, details?, timestamp, requestId } }`, with
 * `x-request-id` set.
 */

const SANE_REQUEST_ID = /^[\w.:-]{1,128}$/;

/** An incoming x-request-id when it is sane, else a fresh one. */
export function requestIdFor(incoming: string | string[] | undefined): string {
  return typeof incoming === "string" && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

export function errorBody(
  code: ErrorCode,
  requestId: unknown,
  message?: string,
  details?: unknown,
): { error: Record<string, unknown> } {
  return {
    error: {
      code,
      message: message ?? ERRORS[code].message,
      ...(details !== undefined ? { details } : {}),
      timestamp: new Date().toISOString(),
      requestId,
    },
  };
}

export function writeHttpError(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  code: ErrorCode,
  message?: string,
  extra?: {
    details?: unknown;
    retryAfter?: number | undefined;
    headers?: Record<string, string>;
  },
): void {
  let id = res.getHeader("x-request-id");
  if (typeof id !== "string") {
    id = requestIdFor(req.headers["x-request-id"]);
    res.setHeader("x-request-id", id);
  }
  const text = JSON.stringify(errorBody(code, id, message, extra?.details));
  res.writeHead(ERRORS[code].status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
    ...(extra?.retryAfter !== undefined ? { "retry-after": String(extra.retryAfter) } : {}),
    ...extra?.headers,
  });
  res.end(text);
}
