import type http from "node:http";
import express, { type NextFunction, type Request, type Response, type Router } from "express";
import type { Logger } from "pino";
import type { Config } from "../../shared/config.js";
import { GatewayError } from "../../shared/errors.js";
import type { Query, ReplacedWorker } from "../../shared/ipc.js";
import type { ClusterResult } from "../cluster-client.js";
import type { WorkerChannel } from "../ipc-channel.js";
import type { CountAnswer, RoomAnswer, RoomsAnswer, UserAnswer } from "../local-queries.js";
import type { PushService } from "../push/push-service.js";
import { type PushGate, setApiSecurityHeaders } from "../protection/http-guard.js";
import { createApiKeyCheck } from "./api-keys.js";
import { createFastPush } from "./fast-push.js";
import { errorHandler, requestId, sendError } from "./express-errors.js";
import { coreOpenApi } from "./core-openapi.js";
import { buildOpenApi, type OpenApiPart } from "./openapi.js";
import { metricsRelay } from "./metrics-relay.js";
import { requestLog } from "./request-log.js";
import { createSchemas, parseRequest } from "./schemas.js";

/**
 * The backend HTTP API on API_PORT. Every query is answered for the whole
 * cluster: the worker that takes the request asks the primary to put it to
 * every worker and merges the answers; a worker that does not answer within
 * QUERY_TIMEOUT_MS is listed in `missingWorkers` instead of hanging the call;
 * with REDIS_URL, other hosts are asked too and `missingHosts` names those
 * that did not answer (src/worker/redis/hosts-cluster.ts).
 */

export interface ApiDeps {
  cfg: Config;
  log: Logger;
  push: PushService;
  cluster: { query(q: Query, timeoutMs: number): Promise<ClusterResult> };
  /** The IPC channel to this host's primary (a /metrics scrape on a worker's connection). */
  primary: Pick<WorkerChannel, "call">;
  readiness: () => {
    ready: boolean;
    reasons: string[];
    workers: { ready: number; total: number };
    /** Workers the primary replaced because they hung (newest last). */
    replaced: ReplacedWorker[];
  };
  /** More routes, mounted behind the API key check; the OpenAPI document lists theirs too. */
  routes?: readonly ApiRoutes[];
  /** Runs before the routes (rate limits, load shedding). */
  guard?: (req: Request, res: Response, next: NextFunction) => void;
  /** Runs on the parsed JSON body, before the routes (shape checks). */
  afterBody?: (req: Request, res: Response, next: NextFunction) => void;
  /** The guard's steps for `POST /api/push` outside express (./fast-push.ts); without it, express only. */
  pushGate?: PushGate;
}

/** A group of routes a feature adds to the API, with its part of the OpenAPI document. */
export interface ApiRoutes {
  mount(router: Router, helpers: ApiHelpers): void;
  openApi: OpenApiPart;
}

export interface ApiHelpers {
  parse<T>(
    schema: {
      safeParse(
        v: unknown,
      ): { success: true; data: T } | { success: false; error: import("zod").ZodError };
    },
    value: unknown,
  ): T;
  clusterQuery(
    q: Query,
  ): Promise<{ results: unknown[]; missing: number[]; missingHosts: string[] }>;
}

function partial(
  missing: number[],
  missingHosts: string[],
): { missingWorkers?: number[]; missingHosts?: string[] } {
  return {
    ...(missing.length ? { missingWorkers: missing } : {}),
    ...(missingHosts.length ? { missingHosts } : {}),
  };
}

export type ApiHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export function createApiApp(deps: ApiDeps): ApiHandler {
  const { cfg, log } = deps;
  const schemas = createSchemas(cfg);
  const keys = createApiKeyCheck(cfg.apiKeys);
  // Built on the first request for it, not at every worker's start (34 ms of a
  // worker's start-up in a --cpu-prof profile).
  let openapi: ReturnType<typeof buildOpenApi> | undefined;
  const openapiDocument = () => {
    openapi ??= buildOpenApi([coreOpenApi(cfg), ...(deps.routes ?? []).map((r) => r.openApi)], {
      apiPort: cfg.API_PORT,
    });
    return openapi;
  };
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.set("query parser", "simple");

  app.use(requestId);
  app.use(requestLog(log), metricsRelay(deps.primary));
  app.use((_req, res, next) => {
    setApiSecurityHeaders(res);
    res.setHeader("cache-control", "no-store");
    next();
  });

  app.get("/health", (_req, res) => {
    res.json({ status: "ok", pid: process.pid });
  });
  app.get("/ready", (_req, res) => {
    const r = deps.readiness();
    if (!r.ready) res.setHeader("retry-after", "1");
    res.status(r.ready ? 200 : 503).json({
      status: r.ready ? "ready" : "not ready",
      reasons: r.reasons,
      workers: r.workers,
    });
  });

  const api = express.Router();
  api.use(keys.middleware);
  if (deps.guard) api.use(deps.guard);
  api.use((req, res, next) => {
    const hasBody =
      req.headers["transfer-encoding"] !== undefined ||
      Number(req.headers["content-length"] ?? 0) > 0;
    if (hasBody && !req.is("application/json")) {
      sendError(res, "UNSUPPORTED_MEDIA_TYPE");
      return;
    }
    next();
  });
  api.use(
    express.json({ limit: cfg.PUSH_BODY_LIMIT_BYTES, strict: false, type: "application/json" }),
  );
  if (deps.afterBody) api.use(deps.afterBody);

  const helpers: ApiHelpers = {
    parse: parseRequest,
    async clusterQuery(q) {
      const r = await deps.cluster.query(q, cfg.QUERY_TIMEOUT_MS);
      return {
        results: r.replies.filter((x) => !x.error).map((x) => x.result),
        missing: r.missing,
        missingHosts: r.missingHosts ?? [],
      };
    },
  };
  const param = (req: Request, name: string, schema: typeof schemas.userId | typeof schemas.room) =>
    helpers.parse(schema, req.params[name]);

  api.post("/push", async (req, res) => {
    if (req.body === undefined)
      throw new GatewayError("VALIDATION_FAILED", "a JSON body is required");
    const body = helpers.parse(schemas.pushRequest, req.body);
    const result = await deps.push.push(body);
    res.status(202).json(result);
  });

  api.get("/rooms", async (req, res) => {
    const q = helpers.parse(schemas.roomsQuery, req.query);
    const { results, missing, missingHosts } = await helpers.clusterQuery({
      kind: "rooms",
      ...(q.prefix ? { prefix: q.prefix } : {}),
    });
    const merged = new Map<string, { sockets: number; users: Set<string> }>();
    for (const r of results as RoomsAnswer[]) {
      for (const [room, v] of Object.entries(r.rooms)) {
        const m = merged.get(room) ?? { sockets: 0, users: new Set<string>() };
        m.sockets += v.sockets;
        for (const u of v.users) m.users.add(u);
        merged.set(room, m);
      }
    }
    const names = [...merged.keys()].sort();
    const start = q.cursor ? names.findIndex((n) => n > q.cursor!) : 0;
    const page = start === -1 ? [] : names.slice(start, start + q.limit);
    const last = page[page.length - 1];
    res.json({
      rooms: page.map((room) => ({
        room,
        sockets: merged.get(room)!.sockets,
        users: merged.get(room)!.users.size,
      })),
      total: names.length,
      ...(last && names.indexOf(last) < names.length - 1 ? { nextCursor: last } : {}),
      ...partial(missing, missingHosts),
    });
  });

  api.get("/rooms/:room", async (req, res) => {
    const room = param(req, "room", schemas.room);
    const { results, missing, missingHosts } = await helpers.clusterQuery({ kind: "room", room });
    const members = new Map<string, number>();
    let sockets = 0;
    for (const r of results as RoomAnswer[]) {
      sockets += r.sockets;
      for (const [u, n] of Object.entries(r.members)) members.set(u, (members.get(u) ?? 0) + n);
    }
    if (sockets === 0 && missing.length + missingHosts.length === 0) {
      throw new GatewayError("NOT_FOUND", "no socket is in this room");
    }
    res.json({
      room,
      sockets,
      members: [...members].map(([userId, n]) => ({ userId, sockets: n })),
      ...partial(missing, missingHosts),
    });
  });

  const membership = (kind: "join" | "leave") => async (req: Request, res: Response) => {
    const room = param(req, "room", schemas.room);
    const userId = param(req, "userId", schemas.userId);
    const { results, missing, missingHosts } = await helpers.clusterQuery({ kind, room, userId });
    const sockets = (results as CountAnswer[]).reduce((n, r) => n + r.sockets, 0);
    if (sockets === 0 && missing.length + missingHosts.length === 0) {
      throw new GatewayError("NOT_FOUND", "the user has no connected socket");
    }
    res.json({ room, userId, sockets, ...partial(missing, missingHosts) });
  };
  api.put("/rooms/:room/members/:userId", membership("join"));
  api.delete("/rooms/:room/members/:userId", membership("leave"));

  api.get("/users/:userId", async (req, res) => {
    const userId = param(req, "userId", schemas.userId);
    const { results, missing, missingHosts } = await helpers.clusterQuery({ kind: "user", userId });
    let sockets = 0;
    const rooms = new Set<string>();
    for (const r of results as UserAnswer[]) {
      sockets += r.sockets;
      for (const room of r.rooms) rooms.add(room);
    }
    res.json({
      userId,
      online: sockets > 0,
      sockets,
      rooms: [...rooms].sort(),
      ...partial(missing, missingHosts),
    });
  });

  api.post("/users/:userId/disconnect", async (req, res) => {
    const userId = param(req, "userId", schemas.userId);
    const { results, missing, missingHosts } = await helpers.clusterQuery({
      kind: "disconnect-user",
      userId,
      reason: "KICKED",
    });
    const sockets = (results as CountAnswer[]).reduce((n, r) => n + r.sockets, 0);
    res.json({ userId, disconnected: sockets, ...partial(missing, missingHosts) });
  });

  api.get("/status", async (_req, res) => {
    const { results, missing, missingHosts } = await helpers.clusterQuery({ kind: "status" });
    const workers = results as { connections: number; users: number; rooms: number }[];
    res.json({
      connections: workers.reduce((n, w) => n + w.connections, 0),
      workers,
      // Not among the live workers above: the ones killed for not answering, and when.
      replaced: deps.readiness().replaced,
      uptimeSeconds: Math.round(process.uptime()),
      ...partial(missing, missingHosts),
    });
  });

  api.get("/openapi.json", (_req, res) => {
    res.json(openapiDocument());
  });

  for (const r of deps.routes ?? []) r.mount(api, helpers);

  api.all("/{*rest}", (req, res) => {
    const allowed = new Set<string>();
    for (const l of api.stack) {
      const route = l.route as { path: string; methods: Record<string, boolean> } | undefined;
      if (!route || route.path === "/{*rest}" || !matchPath(route.path, req.path)) continue;
      for (const [m, on] of Object.entries(route.methods)) if (on) allowed.add(m.toUpperCase());
    }
    if (allowed.size === 0) {
      sendError(res, "NOT_FOUND");
      return;
    }
    if (allowed.has("GET")) allowed.add("HEAD");
    res.setHeader("allow", [...allowed].sort().join(", "));
    sendError(res, "METHOD_NOT_ALLOWED");
  });

  app.use("/api", api);
  app.use((_req, res) => sendError(res, "NOT_FOUND"));
  app.use(errorHandler(log));

  if (!deps.pushGate) return app;
  const fastPush = createFastPush({
    cfg,
    log,
    push: deps.push,
    gate: deps.pushGate,
    schema: schemas.pushRequest,
    identify: keys.identify,
  });
  return (req, res) => {
    if (!fastPush(req, res)) app(req, res);
  };
}

/** Does an express path pattern (`/rooms/:room`) match a concrete path? */
function matchPath(pattern: string, path: string): boolean {
  const p = pattern.split("/");
  const s = path.split("/");
  if (p.length !== s.length) return false;
  return p.every((seg, i) => seg.startsWith(":") || seg === s[i]);
}
