import http from "node:http";
import { io, type Socket } from "socket.io-client";
import { type RunningServer, readBody } from "./server.js";

/**
 * Helpers for the protection, lifecycle and hostile-input tests: sockets
 * from a chosen loopback address, which worker a socket landed on, and HTTP
 * on one kept-alive connection (so that successive requests reach the same
 * worker).
 */

export interface ConnectError extends Error {
  data?: { code?: string; retryAfter?: number };
}

const opened = new Set<Socket>();

/** Closes every socket `open()` made. */
export function closeOpened(): void {
  for (const s of opened) s.close();
  opened.clear();
}

export interface OpenOptions {
  /** A loopback address to connect from (127.0.0.2, ...): another client IP. */
  from?: string;
  reconnection?: boolean;
  transports?: ("websocket" | "polling")[];
  extraHeaders?: Record<string, string>;
}

/** Connects; resolves with the socket or rejects with the connect_error. */
export function open(url: string, token: string | undefined, opts: OpenOptions = {}) {
  const socket = io(url, {
    auth: token === undefined ? {} : { token },
    transports: opts.transports ?? ["websocket"],
    reconnection: opts.reconnection ?? false,
    forceNew: true,
    timeout: 10_000,
    ...(opts.extraHeaders ? { extraHeaders: opts.extraHeaders } : {}),
    // engine.io-client hands these to `ws` in Node.
    ...(opts.from ? { localAddress: opts.from } : {}),
    ...(opts.extraHeaders?.origin ? { origin: opts.extraHeaders.origin } : {}),
  } as Parameters<typeof io>[1]);
  opened.add(socket);
  return new Promise<Socket>((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err: ConnectError) => {
      if (!opts.reconnection) socket.close();
      reject(err);
    });
  });
}

/** The worker slot that owns the socket's session (the sid is `<slot>_<random>`). */
export function slotOf(socket: Socket): number {
  const id = (socket.io.engine as unknown as { id: string }).id;
  return Number.parseInt(id.split("_")[0]!, 36);
}

/** Resolves with the error of a handshake that must fail. */
export async function refused(p: Promise<Socket>): Promise<ConnectError> {
  try {
    const s = await p;
    s.close();
  } catch (err) {
    return err as ConnectError;
  }
  throw new Error("the handshake was expected to fail but succeeded");
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: unknown;
  text: string;
}

/** HTTP over one kept-alive connection: every request reaches the same worker. */
export function stickyApi(server: RunningServer, apiKey: string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const request = (
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<HttpAnswer> =>
    new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(
        {
          host: "127.0.0.1",
          port: server.apiPort,
          method,
          path,
          agent,
          headers: {
            authorization: `Bearer ${apiKey}`,
            ...(data ? { "content-type": "application/json" } : {}),
            ...headers,
          },
        },
        (res) => {
          void readBody(res).then(({ text, body: parsed }) =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, text }),
          );
        },
      );
      req.on("error", reject);
      req.end(data);
    });
  return { request, close: () => agent.destroy() };
}

/** Resolves when `check` returns true, polling every `everyMs`; rejects after `timeoutMs`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  everyMs = 50,
): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A metric's value from the primary's /metrics (sum over matching series). */
export async function metricValue(
  server: RunningServer,
  name: string,
  labels = "",
): Promise<number> {
  const text = await (await fetch(`${server.apiUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith("{") || rest.startsWith(" "))) continue;
    if (labels && !rest.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}
