import { createHmac, timingSafeEqual } from "node:crypto";
import { EventEmitter } from "node:events";
import http from "node:http";
import type net from "node:net";

// TEST FIXTURE ONLY: the signing secret the test servers and this backend share.
export const TEST_BACKEND_SECRET = "test-only-backend-signing-secret-0123";

/**
 * What the backend does with one request. The first matching field wins:
 * `garbage` writes bytes that are not HTTP and closes, `close` destroys the
 * connection after reading the request, `hang` never answers, otherwise it
 * answers `status` with `json` (serialised) or `text` after `delayMs`.
 */
export interface Behavior {
  status?: number;
  json?: unknown;
  text?: string;
  contentType?: string;
  delayMs?: number;
  hang?: true;
  close?: true;
  garbage?: true;
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  raw: string;
  /** The parsed body, or undefined if it was not JSON. */
  body: { id: string; event: string; payload: unknown; [k: string]: unknown } | undefined;
  /** 1 for the first request with this body id, 2 for the next, … */
  attempt: number;
  at: number;
  /** How the exchange ended: the answer was written out, or the client went away first. */
  outcome?: "answered" | "client-closed";
}

export interface TestBackend {
  url: string;
  port: number;
  requests: RecordedRequest[];
  /** Behaviours for requests whose body.event is `event`, in order; then `then` (default: the default). */
  script(event: string, behaviors: Behavior[], then?: Behavior): void;
  /** The behaviour for unscripted events (initially: 200 echo). */
  setDefault(b: Behavior | undefined): void;
  requestsFor(id: string): RecordedRequest[];
  requestsOf(event: string): RecordedRequest[];
  /** Resolves with the first request (already recorded or future) that matches. */
  waitFor(pred: (r: RecordedRequest) => boolean, timeoutMs?: number): Promise<RecordedRequest>;
  /** Does the x-signature header verify with TEST_BACKEND_SECRET? */
  verify(r: RecordedRequest, toleranceSeconds?: number): boolean;
  stop(): Promise<void>;
}

/** The default answer: 200 with what was received, so acks can be checked end to end. */
const echo = (r: RecordedRequest): Behavior => ({
  status: 200,
  json: { echo: { event: r.body?.event, payload: r.body?.payload }, attempt: r.attempt },
});

/**
 * A real HTTP server on a free port standing in for the Go backend. Every
 * request is recorded (headers, raw body, attempt number per event id) before
 * the scripted behaviour runs.
 */
export async function startBackend(): Promise<TestBackend> {
  const requests: RecordedRequest[] = [];
  const attempts = new Map<string, number>();
  const scripts = new Map<string, { queue: Behavior[]; then: Behavior | undefined }>();
  let fallback: Behavior | undefined;
  const recorded = new EventEmitter();
  recorded.setMaxListeners(0);
  const sockets = new Set<net.Socket>();

  const behaviorFor = (r: RecordedRequest): Behavior => {
    const s = r.body ? scripts.get(r.body.event) : undefined;
    if (s) return s.queue.shift() ?? s.then ?? fallback ?? echo(r);
    return fallback ?? echo(r);
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      let body: RecordedRequest["body"];
      try {
        body = JSON.parse(raw);
      } catch {
        body = undefined;
      }
      const id = body?.id ?? "";
      const attempt = (attempts.get(id) ?? 0) + 1;
      attempts.set(id, attempt);
      const r: RecordedRequest = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        raw,
        body,
        attempt,
        at: Date.now(),
      };
      requests.push(r);
      recorded.emit("request", r);
      res.once("finish", () => {
        r.outcome ??= "answered";
        recorded.emit("outcome", r);
      });
      res.once("close", () => {
        r.outcome ??= "client-closed";
        recorded.emit("outcome", r);
      });
      const b = behaviorFor(r);
      if (b.garbage) {
        req.socket.end("\x00\x01 this is not HTTP \xff\r\n\r\n");
        return;
      }
      if (b.close) {
        req.socket.destroy();
        return;
      }
      if (b.hang) return;
      const answer = () => {
        const text = b.text ?? (b.json === undefined ? "" : JSON.stringify(b.json));
        res.writeHead(b.status ?? 200, {
          "content-type":
            b.contentType ?? (b.text === undefined ? "application/json" : "text/plain"),
          "content-length": Buffer.byteLength(text),
        });
        res.end(text);
      };
      if (b.delayMs) setTimeout(answer, b.delayMs);
      else answer();
    });
  });
  server.keepAliveTimeout = 60_000;
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    script(event, behaviors, then) {
      scripts.set(event, { queue: [...behaviors], then });
    },
    setDefault(b) {
      fallback = b;
    },
    requestsFor: (id) => requests.filter((r) => r.body?.id === id),
    requestsOf: (event) => requests.filter((r) => r.body?.event === event),
    waitFor(pred, timeoutMs = 10_000) {
      const found = requests.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          recorded.off("request", on);
          reject(new Error(`no matching backend request within ${timeoutMs} ms`));
        }, timeoutMs);
        const on = (r: RecordedRequest) => {
          if (!pred(r)) return;
          clearTimeout(timer);
          recorded.off("request", on);
          resolve(r);
        };
        recorded.on("request", on);
      });
    },
    verify(r, toleranceSeconds = 300) {
      const header = r.headers["x-signature"];
      if (typeof header !== "string") return false;
      const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
      if (!m) return false;
      const t = Number(m[1]);
      if (Math.abs(Date.now() / 1000 - t) > toleranceSeconds) return false;
      const expected = createHmac("sha256", TEST_BACKEND_SECRET).update(`${t}.${r.raw}`).digest();
      return timingSafeEqual(Buffer.from(m[2]!, "hex"), expected);
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
