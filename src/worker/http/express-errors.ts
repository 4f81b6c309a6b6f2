import type { NextFunction, Request, Response } from "express";
import type { Logger } from "pino";
import { ERRORS, type ErrorCode, GatewayError } from "../../shared/errors.js";
import { errorBody, requestIdFor } from "../../shared/http-error.js";
import { invalidJson } from "./schemas.js";

/**
 * The contract's HTTP error body, with x-request-id on every response, as
 * express middleware for the API app (plain `node:http` responses use
 * src/shared/http-error.ts, which builds the same body).
 */

export function requestId(req: Request, res: Response, next: NextFunction): void {
  const id = requestIdFor(req.headers["x-request-id"]);
  res.locals["requestId"] = id;
  res.setHeader("x-request-id", id);
  next();
}

export function sendError(
  res: Response,
  code: ErrorCode,
  message?: string,
  extra?: { details?: unknown; retryAfter?: number | undefined },
): void {
  if (extra?.retryAfter !== undefined) res.setHeader("retry-after", String(extra.retryAfter));
  const id = res.locals["requestId"] ?? res.getHeader("x-request-id");
  res.status(ERRORS[code].status).json(errorBody(code, id, message, extra?.details));
}

interface BodyParserError {
  type?: string;
  status?: number;
}

/**
 * What the contract answers for anything thrown while serving a request: a
 * GatewayError as it is, body-parser's errors mapped (never a 5xx for bad
 * input), anything else INTERNAL and logged. Undefined: the client went away,
 * nothing to answer. Express's error handler and the push fast path use it.
 */
export function gatewayErrorOf(
  err: unknown,
  log: Logger,
  context: { path: string; requestId: unknown },
): GatewayError | undefined {
  if (err instanceof GatewayError) return err;
  const { type, status } = (err ?? {}) as BodyParserError;
  switch (type) {
    case "entity.too.large":
      return new GatewayError("PAYLOAD_TOO_LARGE");
    case "entity.parse.failed":
      return invalidJson();
    case "encoding.unsupported":
    case "charset.unsupported":
      return new GatewayError("UNSUPPORTED_MEDIA_TYPE", "unsupported content encoding or charset");
    case "request.aborted":
      return undefined;
  }
  if (typeof status === "number" && status >= 400 && status < 500) {
    return new GatewayError("VALIDATION_FAILED", "the request is not valid");
  }
  log.error({ err, ...context }, "request failed");
  return new GatewayError("INTERNAL");
}

/** Express's last handler: the contract's error format for anything a route threw. */
export function errorHandler(log: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const e = gatewayErrorOf(err, log, { path: req.path, requestId: res.locals["requestId"] });
    if (e) sendError(res, e.code, e.message, { details: e.details, retryAfter: e.retryAfter });
  };
}
