import http from "node:http";
import type net from "node:net";
import type { Logger } from "pino";
import { requestIdFor, writeHttpError } from "../shared/http-error.js";
import { enforceRequestTimeouts } from "../shared/http-timeouts.js";
import { setPageSecurityHeaders } from "../shared/security-headers.js";

/**
 * The few HTTP routes the primary answers itself, so they keep working while
 * a worker is stuck or restarting: /health and /ready (both ports), and on
 * the API port whatever is registered with `route` (metrics, dashboard).
 */

export type RouteHandler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
) => void | Promise<void>;

export interface InternalHttp {
  server: http.Server;
  serve(socket: net.Socket, head: Buffer): void;
  route(prefix: string, handler: RouteHandler): void;
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(text);
}

export function createInternalHttp(deps: {
  log: Logger;
  requestTimeoutMs: number;
  readiness: () => { ready: boolean; reasons: string[]; details: Record<string, unknown> };
}): InternalHttp {
  const routes: [string, RouteHandler][] = [
    ["/health", (_req, res) => sendJson(res, 200, { status: "ok", pid: process.pid })],
    [
      "/ready",
      (_req, res) => {
        const r = deps.readiness();
        if (!r.ready) res.setHeader("retry-after", "1");
        sendJson(res, r.ready ? 200 : 503, {
          status: r.ready ? "ready" : "not ready",
          reasons: r.reasons,
          ...r.details,
        });
      },
    ],
  ];
  const match = (path: string) =>
    routes.find(([p]) => path === p || (p.endsWith("/") && path.startsWith(p)))?.[1] ??
    routes.find(([p]) => path.startsWith(`${p}/`))?.[1];

  const server = http.createServer((req, res) => {
    setPageSecurityHeaders(res);
    // The balancer routes by a connection's first request: a keep-alive
    // client (undici, Go) that asked /ready first would otherwise send its
    // next `POST /api/push` here and get a 404. Closing hands the next
    // request a fresh connection, which the balancer routes to a worker.
    res.shouldKeepAlive = false;
    const url = new URL(req.url ?? "/", "http://localhost");
    const handler = match(url.pathname);
    res.setHeader("x-request-id", requestIdFor(req.headers["x-request-id"]));
    if (!handler) return writeHttpError(req, res, "NOT_FOUND");
    Promise.resolve(handler(req, res, url)).catch((err: unknown) => {
      deps.log.error({ err, path: url.pathname }, "internal route failed");
      if (!res.headersSent) writeHttpError(req, res, "INTERNAL");
      else res.destroy();
    });
  });

  enforceRequestTimeouts(server, deps.requestTimeoutMs);

  return {
    server,
    serve(socket, head) {
      server.emit("connection", socket);
      socket.emit("data", head);
      socket.resume();
    },
    route(prefix, handler) {
      routes.push([prefix, handler]);
    },
  };
}
