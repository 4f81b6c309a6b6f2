import cluster from "node:cluster";
import http from "node:http";

/**
 * TEST ONLY, never part of src/ or dist/: loaded into the server's processes
 * with `node --import` (startServer({ testHooks: true }); cluster workers
 * inherit the primary's execArgv). In a worker it answers `/api/test/*` on
 * the worker's HTTP servers before the application sees the request, so that
 * the tests can break a worker on purpose: stall its event loop, crash it,
 * and look for prototype pollution from inside.
 *
 * Plain Node strips the types (Node 24): only erasable TypeScript here.
 */

// Taken before the server's code loads: anything it adds later shows.
const BASELINE_PROTO_KEYS = new Set(Object.getOwnPropertyNames(Object.prototype));
const slot = Number(process.env["SS_SLOT"] ?? 0);

type Hook = (res: http.ServerResponse, body: Record<string, unknown>) => unknown;

// Every message this worker sends its primary, counted by tag, and requests
// (an id other than 0) apart: what a step cost in IPC, seen from outside.
const sentByTag: Record<string, number> = {};
const requestsByTag: Record<string, number> = {};
if (cluster.isWorker && typeof process.send === "function") {
  const send = process.send.bind(process) as (...args: unknown[]) => boolean;
  process.send = ((...args: unknown[]) => {
    const msg = args[0] as { t?: unknown; id?: unknown } | null;
    if (msg && typeof msg === "object" && typeof msg.t === "string") {
      sentByTag[msg.t] = (sentByTag[msg.t] ?? 0) + 1;
      if (typeof msg.id === "number" && msg.id !== 0) {
        requestsByTag[msg.t] = (requestsByTag[msg.t] ?? 0) + 1;
      }
    }
    return send(...args);
  }) as typeof process.send;
}

const hooks: Record<string, Hook> = {
  // Answers first, then blocks the loop for `ms` (so the caller knows which worker it stalled).
  "POST /api/test/block-loop": (res, body) => {
    const ms = Math.min(10_000, Math.max(0, Number(body["ms"] ?? 0)));
    res.once("finish", () => {
      setImmediate(() => {
        const end = Date.now() + ms;
        while (Date.now() < end) {
          // busy: this is the point
        }
      });
    });
    return { slot, pid: process.pid, blockedMs: ms };
  },
  // An error thrown outside any handler: the worker's uncaughtException path.
  "POST /api/test/crash": (res) => {
    res.once("finish", () => {
      setImmediate(() => {
        throw new Error("test-only crash requested through /api/test/crash");
      });
    });
    return { slot, pid: process.pid };
  },
  "POST /api/test/ipc-sent": () => ({
    slot,
    pid: process.pid,
    sent: { ...sentByTag },
    requests: { ...requestsByTag },
  }),
  "GET /api/test/prototype": () => ({
    slot,
    added: Object.getOwnPropertyNames(Object.prototype).filter((k) => !BASELINE_PROTO_KEYS.has(k)),
    arrayAdded: Object.keys(Array.prototype),
  }),
};

function answer(req: http.IncomingMessage, res: http.ServerResponse, hook: Hook): void {
  let text = "";
  req.setEncoding("utf8");
  req.on("data", (chunk: string) => {
    text += chunk;
  });
  req.on("end", () => {
    let body: Record<string, unknown> = {};
    try {
      body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      // an unreadable body reads as no parameters
    }
    const json = JSON.stringify(hook(res, body ?? {}));
    res.writeHead(200, { "content-type": "application/json; charset=utf-8" });
    res.end(json);
  });
}

if (cluster.isWorker) {
  const emit = http.Server.prototype.emit;
  // Every 'request' of every HTTP server in the worker passes here first.
  http.Server.prototype.emit = function emitWithTestHooks(
    this: http.Server,
    event: string | symbol,
    ...args: unknown[]
  ): boolean {
    if (event === "request") {
      const [req, res] = args as [http.IncomingMessage, http.ServerResponse];
      const hook = hooks[`${req.method} ${req.url?.split("?")[0]}`];
      if (hook) {
        answer(req, res, hook);
        return true;
      }
    }
    return Reflect.apply(emit, this, [event, ...args]) as boolean;
  } as typeof emit;
}
