import type { NextFunction, Request, Response } from "express";
import { isPrimaryToWorker, type WorkerToPrimary } from "../../shared/ipc.js";
import {
  METRICS_SCRAPE_REQUEST,
  METRICS_SCRAPE_RESULT,
  type ScrapeResult,
} from "../../shared/observability.js";

/**
 * `/metrics` and `/dashboard` belong to the primary, and the balancer sends
 * a connection whose *first* request names them there. A keep-alive client
 * that called the API first (a Go backend scraping with its API key) holds a
 * connection owned by a worker, so the worker answers those paths too:
 * /metrics by asking the primary for the merged text over IPC, /dashboard by
 * a redirect on a fresh connection (which the balancer gives the primary).
 */
export function primaryRoutes(timeoutMs = 10_000) {
  let nextId = 1;
  const pending = new Map<number, (r: ScrapeResult) => void>();
  process.on("message", (msg: unknown) => {
    if (!isPrimaryToWorker(msg) || msg.t !== "ss:custom" || msg.name !== METRICS_SCRAPE_RESULT) {
      return;
    }
    const r = msg.data as ScrapeResult;
    pending.get(r.id)?.(r);
  });
  const scrape = () =>
    new Promise<ScrapeResult>((resolve) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        resolve({ id, error: "the primary did not answer" });
      }, timeoutMs);
      pending.set(id, (r) => {
        clearTimeout(timer);
        pending.delete(id);
        resolve(r);
      });
      const msg: WorkerToPrimary = { t: "ss:custom", name: METRICS_SCRAPE_REQUEST, data: { id } };
      if (process.connected) process.send?.(msg);
    });

  return (req: Request, res: Response, next: NextFunction): void => {
    if (req.path === "/metrics" && (req.method === "GET" || req.method === "HEAD")) {
      scrape().then((r) => {
        if (r.text === undefined) {
          res.status(503).set("retry-after", "1").type("text/plain").send(`${r.error}\n`);
          return;
        }
        res
          .status(200)
          .set("content-type", r.contentType ?? "text/plain")
          .send(r.text);
      }, next);
      return;
    }
    if (req.path === "/dashboard" || req.path.startsWith("/dashboard/")) {
      res.set("connection", "close").redirect(307, req.originalUrl);
      return;
    }
    next();
  };
}
