import type { NextFunction, Request, Response } from "express";
import type { Logger } from "pino";
import { metrics } from "../../shared/metrics.js";

/**
 * One debug line per API request (with its requestId, never its headers or
 * query string, which may carry credentials) and the request metrics. The
 * route label is the matched pattern (`/api/rooms/:room`), so user and room
 * names never become label values.
 */
export interface RequestRecord {
  requestId: unknown;
  method: string;
  /** The matched route pattern, or "unmatched" / "middleware". */
  route: string;
  path: string;
  status: number;
  seconds: number;
}

/** Counts, times and (at debug level) logs one finished request. */
export function requestRecorder(baseLog: Logger) {
  const log = baseLog.child({ module: "api" });
  return (r: RequestRecord): void => {
    metrics.apiRequests.inc({ method: r.method, route: r.route, status: String(r.status) });
    metrics.apiDuration.observe({ method: r.method, route: r.route }, r.seconds);
    if (log.isLevelEnabled("debug")) {
      log.debug(
        {
          requestId: r.requestId,
          method: r.method,
          path: r.path,
          status: r.status,
          ms: Math.round(r.seconds * 1e4) / 10,
        },
        "api request",
      );
    }
  };
}

export function requestLog(baseLog: Logger) {
  const record = requestRecorder(baseLog);
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    res.once("finish", () => {
      record({
        requestId: res.locals["requestId"],
        method: req.method,
        route: req.route?.path
          ? `${req.baseUrl}${String(req.route.path)}`
          : res.statusCode === 404
            ? "unmatched"
            : "middleware",
        path: req.originalUrl.split("?", 1)[0]!,
        status: res.statusCode,
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
      });
    });
    next();
  };
}
