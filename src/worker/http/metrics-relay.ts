import type { NextFunction, Request, Response } from "express";
import type { WorkerChannel } from "../ipc-channel.js";

/**
 * `/metrics` and `/dashboard` belong to the primary, and the balancer sends
 * a connection whose *first* request names them there. A keep-alive client
 * that called the API first (a Go backend scraping with its API key) holds a
 * connection owned by a worker, so the worker answers those paths too:
 * /metrics by asking the primary for the merged text over IPC, /dashboard by
 * a redirect on a fresh connection (which the balancer gives the primary).
 */
export function metricsRelay(primary: Pick<WorkerChannel, "call">, timeoutMs = 10_000) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (req.path === "/metrics" && (req.method === "GET" || req.method === "HEAD")) {
      primary.call("ss:scrape", {}, timeoutMs).then(
        (r) => {
          res.status(200).set("content-type", r.contentType).send(r.text);
        },
        // No answer in time, or the primary's scrape failed: an RpcError says which.
        (err: Error) => {
          res.status(503).set("retry-after", "1").type("text/plain").send(`${err.message}\n`);
        },
      );
      return;
    }
    if (req.path === "/dashboard" || req.path.startsWith("/dashboard/")) {
      res.set("connection", "close").redirect(307, req.originalUrl);
      return;
    }
    next();
  };
}
