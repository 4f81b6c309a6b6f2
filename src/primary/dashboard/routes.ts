import { readFileSync } from "node:fs";
import type http from "node:http";
import { createRequire } from "node:module";
import type { Logger } from "pino";
import { createClientAddress } from "../../shared/client-address.js";
import type { Config } from "../../shared/config.js";
import { writeHttpError } from "../../shared/http-error.js";
import type { LogRing } from "../../shared/log-ring.js";
import type { RoomsPageAnswer } from "../../shared/observability.js";
import { sendJson } from "../internal-http.js";
import type { QueryHub } from "../queries.js";
import type { Supervisor } from "../supervisor.js";
import { createDashboardFeed } from "./feed.js";
import { createDashboardSession, createLoginLockout } from "./session.js";

/**
 * `/dashboard` on API_PORT, served by the primary so that it keeps working
 * while a worker is stuck or restarting. Without a session the page is the
 * login form and every data endpoint answers 401; the pages carry no numbers,
 * which arrive only through the authorized live feed and JSON endpoints.
 * Wrong tokens count against the client address (session.ts); an address
 * that is locked out gets 429 for any token it presents, the right one
 * included, so guessing cannot go on. A session cookie it already holds
 * still works: a random session id is not something one guesses.
 */

const PUBLIC_DIR = new URL("../../../public/dashboard/", import.meta.url);
const require = createRequire(import.meta.url);

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

const ASSETS: Record<string, { path: string | URL; type: string }> = {
  "dashboard.js": { path: new URL("dashboard.js", PUBLIC_DIR), type: "text/javascript" },
  "dashboard.css": { path: new URL("dashboard.css", PUBLIC_DIR), type: "text/css" },
  "login.js": { path: new URL("login.js", PUBLIC_DIR), type: "text/javascript" },
  // uPlot comes from node_modules (a runtime dependency): no CDN, ever.
  "uplot.js": { path: require.resolve("uplot/dist/uPlot.iife.min.js"), type: "text/javascript" },
  "uplot.css": { path: require.resolve("uplot/dist/uPlot.min.css"), type: "text/css" },
};

const LOGIN_ERROR_MARK = "<!--login-error-->";
const MAX_LOGIN_BODY = 4_096;
const MAX_MEMBERS = 200;

export interface Dashboard {
  handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void>;
  close(): void;
}

export function createDashboard(deps: {
  token: string;
  cfg: Pick<Config, "TRUSTED_PROXIES" | "DASHBOARD_MAX_FAILED_LOGINS" | "DASHBOARD_LOCKOUT_S">;
  hub: QueryHub;
  sup: Supervisor;
  log: Logger;
  primaryLogs: LogRing;
  queryTimeoutMs: number;
  /** Users present in each of these presence rooms (PRESENCE_ROOMS); absent without presence. */
  presence?: {
    isPresenceRoom(room: string): boolean;
    counts(rooms: string[]): Promise<Record<string, number>>;
  };
}): Dashboard {
  const log = deps.log.child({ module: "dashboard" });
  const clientAddressOf = createClientAddress(deps.cfg.TRUSTED_PROXIES);
  const addressOf = (req: http.IncomingMessage) =>
    clientAddressOf(req.socket.remoteAddress, req.headers["x-forwarded-for"]);
  const lockout = createLoginLockout({
    maxFailures: deps.cfg.DASHBOARD_MAX_FAILED_LOGINS,
    lockoutS: deps.cfg.DASHBOARD_LOCKOUT_S,
  });
  // Open live feeds per session: a session that ends (logout, eviction,
  // expiry) takes its feeds with it rather than streaming on.
  const streams = new Map<string, Set<http.ServerResponse>>();
  const session = createDashboardSession(deps.token, {
    onEnd(key) {
      for (const res of streams.get(key) ?? []) res.end();
    },
  });
  const feed = createDashboardFeed({
    hub: deps.hub,
    sup: deps.sup,
    log,
    primaryLogs: deps.primaryLogs,
  });
  const cache = new Map<string, Buffer>();
  const file = (path: string | URL) => {
    const key = String(path);
    let b = cache.get(key);
    if (!b) {
      b = readFileSync(path);
      cache.set(key, b);
    }
    return b;
  };

  const html = (res: http.ServerResponse, status: number, body: Buffer | string, extra = {}) => {
    res.writeHead(status, {
      ...SECURITY_HEADERS,
      "content-type": "text/html; charset=utf-8",
      "content-length": Buffer.byteLength(body),
      ...extra,
    });
    res.end(body);
  };
  const loginPage = (res: http.ServerResponse, status: number, error?: string, extra = {}) => {
    const page = file(new URL("login.html", PUBLIC_DIR)).toString("utf8");
    html(
      res,
      status,
      error ? page.replace(LOGIN_ERROR_MARK, `<p class="error" role="alert">${error}</p>`) : page,
      extra,
    );
  };
  const redirect = (res: http.ServerResponse, cookie?: string) => {
    res.writeHead(303, {
      ...SECURITY_HEADERS,
      location: "/dashboard",
      "content-length": 0,
      ...(cookie ? { "set-cookie": cookie } : {}),
    });
    res.end();
  };
  const unauthorized = (res: http.ServerResponse) =>
    writeHttpError(res.req, res, "UNAUTHORIZED", "log in to the dashboard first");
  const badRequest = (res: http.ServerResponse, message: string) =>
    writeHttpError(res.req, res, "VALIDATION_FAILED", message);
  const lockedOut = (res: http.ServerResponse, seconds: number, api: boolean) => {
    const message = "too many failed logins from this address";
    if (api) return writeHttpError(res.req, res, "RATE_LIMITED", message, { retryAfter: seconds });
    const minutes = Math.ceil(seconds / 60);
    loginPage(
      res,
      429,
      `Too many failed attempts from this address; try again in ${minutes} minute${minutes === 1 ? "" : "s"}.`,
      { "retry-after": String(seconds) },
    );
  };

  /**
   * Whether a presented token (form, `?token=`, bearer) lets the request in.
   * When it does not, the request has been answered: 401 for a wrong token,
   * 429 while the address is locked out. `api` picks JSON over the login page.
   */
  async function admit(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    tokenOk: boolean,
    api: boolean,
  ): Promise<boolean> {
    const address = addressOf(req);
    const locked = await lockout.lockedFor(address);
    if (locked !== undefined) {
      lockedOut(res, locked, api);
      return false;
    }
    if (tokenOk) return true;
    const lockedNow = await lockout.fail(address);
    if (lockedNow !== undefined) {
      log.warn({ ip: address, lockoutS: lockedNow }, "dashboard logins locked for this address");
      lockedOut(res, lockedNow, api);
      return false;
    }
    log.warn({ ip: address }, "dashboard login refused");
    if (api) unauthorized(res);
    else loginPage(res, 401, "Wrong token.");
    return false;
  }

  async function readForm(req: http.IncomingMessage): Promise<URLSearchParams | undefined> {
    let body = "";
    for await (const chunk of req) {
      body += chunk;
      if (body.length > MAX_LOGIN_BODY) return undefined;
    }
    return new URLSearchParams(body);
  }

  async function login(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const form = await readForm(req);
    if (await admit(req, res, session.checkToken(form?.get("token")), false)) {
      redirect(res, session.issueCookie(req));
    }
  }

  function subscribe(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    from?: { key: string; expiresAt: number },
  ): void {
    if (!feed.subscribe(req, res)) {
      writeHttpError(req, res, "OVERLOADED", "too many open dashboards", { retryAfter: 5 });
      return;
    }
    if (!from) return;
    let open = streams.get(from.key);
    if (!open) {
      open = new Set();
      streams.set(from.key, open);
    }
    open.add(res);
    const expiry = setTimeout(() => res.end(), from.expiresAt - Date.now());
    expiry.unref();
    res.on("close", () => {
      clearTimeout(expiry);
      open.delete(res);
      if (open.size === 0 && streams.get(from.key) === open) streams.delete(from.key);
    });
  }

  /** Presence counts of the presence rooms among these; none when they cannot be had now. */
  async function presentIn(rooms: string[]): Promise<Record<string, number>> {
    const p = deps.presence;
    const wanted = p ? rooms.filter((r) => p.isPresenceRoom(r)) : [];
    if (!p || wanted.length === 0) return {};
    return p.counts(wanted).catch((err: unknown) => {
      log.warn({ err }, "presence counts unavailable");
      return {};
    });
  }

  async function roomsPage(res: http.ServerResponse, url: URL): Promise<void> {
    const limitParam = url.searchParams.get("limit") ?? "50";
    const limit = Number(limitParam);
    const after = url.searchParams.get("after") ?? undefined;
    const prefix = url.searchParams.get("prefix") ?? undefined;
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      return badRequest(res, "limit: an integer from 1 to 100");
    }
    if ((after?.length ?? 0) > 512 || (prefix?.length ?? 0) > 512) {
      return badRequest(res, "after and prefix: at most 512 characters");
    }
    const userRooms = url.searchParams.get("userRooms") === "1";
    const { replies, missing } = await deps.hub.run(
      {
        kind: "dashboard-rooms",
        limit,
        userRooms,
        ...(after ? { after } : {}),
        ...(prefix ? { prefix } : {}),
      },
      deps.queryTimeoutMs,
    );
    const merged = new Map<string, number>();
    let total = 0;
    let someFull = false;
    for (const r of replies) {
      if (r.error) continue;
      const a = r.result as RoomsPageAnswer;
      total += a.total;
      if (a.rooms.length === limit) someFull = true;
      for (const [name, sockets] of a.rooms) merged.set(name, (merged.get(name) ?? 0) + sockets);
    }
    // Each worker sent its first `limit` names after the cursor, so the first
    // `limit` of the union are exactly the host's first `limit`.
    const names = [...merged.keys()].sort();
    const page = names.slice(0, limit);
    const more = names.length > limit || someFull;
    const present = await presentIn(page);
    sendJson(res, 200, {
      rooms: page.map((room) => ({
        room,
        sockets: merged.get(room)!,
        ...(present[room] !== undefined ? { present: present[room] } : {}),
      })),
      totalAtMost: total,
      ...(more && page.length > 0 ? { nextAfter: page[page.length - 1] } : {}),
      ...(missing.length ? { missingWorkers: missing } : {}),
    });
  }

  async function roomMembers(res: http.ServerResponse, encoded: string): Promise<void> {
    let room: string;
    try {
      room = decodeURIComponent(encoded);
    } catch {
      return badRequest(res, "room: not a valid URL-encoded name");
    }
    if (room.length === 0 || room.length > 512) return badRequest(res, "room: 1 to 512 characters");
    const { replies, missing } = await deps.hub.run({ kind: "room", room }, deps.queryTimeoutMs);
    const members = new Map<string, number>();
    let sockets = 0;
    for (const r of replies) {
      if (r.error) continue;
      const a = r.result as { members: Record<string, number>; sockets: number };
      sockets += a.sockets;
      for (const [u, n] of Object.entries(a.members)) members.set(u, (members.get(u) ?? 0) + n);
    }
    const users = [...members.keys()].sort();
    const present = (await presentIn([room]))[room];
    sendJson(res, 200, {
      room,
      sockets,
      users: users.length,
      ...(present !== undefined ? { present } : {}),
      members: users
        .slice(0, MAX_MEMBERS)
        .map((userId) => ({ userId, sockets: members.get(userId) })),
      ...(users.length > MAX_MEMBERS ? { truncated: true } : {}),
      ...(missing.length ? { missingWorkers: missing } : {}),
    });
  }

  return {
    async handle(req, res, url) {
      const path = url.pathname.replace(/\/+$/, "") || "/";
      const method = req.method ?? "GET";

      if (path.startsWith("/dashboard/assets/")) {
        const asset = ASSETS[path.slice("/dashboard/assets/".length)];
        if (!asset || (method !== "GET" && method !== "HEAD")) return notFound(res);
        const body = file(asset.path);
        res.writeHead(200, {
          ...SECURITY_HEADERS,
          "content-type": `${asset.type}; charset=utf-8`,
          "content-length": body.length,
          "cache-control": "no-cache",
        });
        res.end(method === "HEAD" ? undefined : body);
        return;
      }

      if (path === "/dashboard" && method === "GET") {
        const token = url.searchParams.get("token");
        if (token !== null) {
          // A token in the address: log in, then drop it from the address
          // bar (and from history) with a redirect to the bare path.
          if (await admit(req, res, session.checkToken(token), false)) {
            redirect(res, session.issueCookie(req));
          }
          return;
        }
        const who = session.credentials(req);
        if (who.kind === "none") return loginPage(res, 200);
        if (who.kind === "token" && !(await admit(req, res, who.ok, false))) return;
        return html(res, 200, file(new URL("index.html", PUBLIC_DIR)));
      }
      if (path === "/dashboard/login" && method === "POST") return login(req, res);
      if (path === "/dashboard/logout" && method === "POST") {
        return redirect(res, session.endSession(req));
      }

      if (path.startsWith("/dashboard/api/")) {
        if (method !== "GET") return notFound(res);
        const who = session.credentials(req);
        if (who.kind === "none") return unauthorized(res);
        if (who.kind === "token" && !(await admit(req, res, who.ok, true))) return;
        if (path === "/dashboard/api/feed") {
          return subscribe(req, res, who.kind === "session" ? who : undefined);
        }
        if (path === "/dashboard/api/rooms") return roomsPage(res, url);
        if (path.startsWith("/dashboard/api/rooms/")) {
          return roomMembers(res, path.slice("/dashboard/api/rooms/".length));
        }
      }
      notFound(res);
    },
    close() {
      feed.close();
    },
  };
}

function notFound(res: http.ServerResponse): void {
  writeHttpError(res.req, res, "NOT_FOUND");
}
