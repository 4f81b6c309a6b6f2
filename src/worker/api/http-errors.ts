import type { NextFunction, Request, Response } from "express";
import type { Logger } from "pino";
import { ERRORS, type ErrorCode, GatewayError } from "../../shared/errors.js";
import { errorBody, requestIdFor } from "../../shared/http-error.js";
import { invalidJson } from "./schemas.js";

/** The contract's HTTP error body, with x-request-id on every response. */

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

/** Maps anything thrown in a route to the contract's error format; never a 5xx for bad input. */
export function errorHandler(log: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof GatewayError) {
      sendError(res, err.code, err.message, { details: err.details, retryAfter: err.retryAfter });
      return;
    }
    const type = (err as BodyParserError | null)?.type;
    switch (type) {
      case "entity.too.large":
        sendError(res, "PAYLOAD_TOO_LARGE");
        return;
      case "entity.parse.failed": {
        const e = invalidJson();
        sendError(res, e.code, e.message, { details: e.details });
        return;
      }
      case "encoding.unsupported":
      case "charset.unsupported":
        sendError(res, "UNSUPPORTED_MEDIA_TYPE", "unsupported content encoding or charset");
        return;
      case "request.aborted":
        return;
    }
    const status = (err as BodyParserError | null)?.status;
    if (typeof status === "number" && status >= 400 && status < 500) {
      sendError(res, "VALIDATION_FAILED", "the request is not valid");
      return;
    }
    log.error({ err, path: req.path, requestId: res.locals["requestId"] }, "request failed");
    sendError(res, "INTERNAL");
  };
}
