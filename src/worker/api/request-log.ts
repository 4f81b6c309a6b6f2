import type { NextFunction, Request, Response } from "express";
import type { Logger } from "pino";
import { metrics } from "../../shared/metrics.js";

/**
 * One debug line per API request (with its requestId, never its headers or
 * query string, which may carry credentials) and the request metrics. The
 * route label is the matched pattern (`/api/rooms/:room`), so user and room
 * names never become label values.
 */
export function requestLog(baseLog: Logger) {
  const log = baseLog.child({ module: "api" });
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    res.once("finish", () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = req.route?.path
        ? `${req.baseUrl}${String(req.route.path)}`
        : res.statusCode === 404
          ? "unmatched"
          : "middleware";
      metrics.apiRequests.inc({ method: req.method, route, status: String(res.statusCode) });
      metrics.apiDuration.observe({ method: req.method, route }, seconds);
      if (log.isLevelEnabled("debug")) {
        log.debug(
          {
            requestId: res.locals["requestId"],
            method: req.method,
            path: req.originalUrl.split("?", 1)[0],
            status: res.statusCode,
            ms: Math.round(seconds * 1e4) / 10,
          },
          "api request",
        );
      }
    });
    next();
  };
}
