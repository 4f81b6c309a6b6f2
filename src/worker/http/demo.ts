import { readFileSync } from "node:fs";
import type http from "node:http";
import { SignJWT } from "jose";
import type { Config } from "../../shared/config.js";
import { writeHttpError } from "../../shared/http-error.js";
import { USER_ID_PATTERN } from "../../shared/names.js";

/**
 * The public port's plain HTTP: the demo page and its dev-only token issuer.
 * The token endpoint exists only in dev mode with an HS secret, because it
 * signs tokens for any user name: never in production.
 */

const PUBLIC_DIR = new URL("../../../public/", import.meta.url);
const STATIC: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/demo.js": { file: "demo.js", type: "text/javascript; charset=utf-8" },
  "/demo.css": { file: "demo.css", type: "text/css; charset=utf-8" },
};

export interface DemoDeps {
  /** The ports the primary bound, once known (the page builds its curl line from apiPort). */
  ports: () => { publicPort?: number; apiPort?: number };
}

export function createDemo(cfg: Config, deps: DemoDeps) {
  const secret = cfg.jwt.kind === "secret" ? new TextEncoder().encode(cfg.jwt.secret) : undefined;
  const files = new Map<string, Buffer>();
  const load = (name: string) => {
    let b = files.get(name);
    if (!b) {
      b = readFileSync(new URL(name, PUBLIC_DIR));
      files.set(name, b);
    }
    return b;
  };

  async function issueToken(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let body = "";
    for await (const chunk of req) {
      body += chunk;
      if (body.length > 1024) break;
    }
    let userId: unknown;
    try {
      userId = (JSON.parse(body) as { userId?: unknown }).userId;
    } catch {
      userId = undefined;
    }
    if (typeof userId !== "string" || !USER_ID_PATTERN.test(userId) || !secret) {
      writeHttpError(req, res, "VALIDATION_FAILED", "userId: 1-128 of A-Z a-z 0-9 _ . @ : -");
      return;
    }
    const token = await new SignJWT({ rooms: ["demo:*", "lobby"] })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(userId)
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(secret);
    res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
    res.end(JSON.stringify({ token, userId }));
  }

  return {
    /** True if it answered the request. */
    handle(req: http.IncomingMessage, res: http.ServerResponse): boolean {
      if (!cfg.demo) return false;
      const path = (req.url ?? "/").split("?")[0]!;
      if (path === "/demo/info" && req.method === "GET") {
        res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(JSON.stringify({ apiPort: deps.ports().apiPort ?? null }));
        return true;
      }
      if (path === "/demo/token" && req.method === "POST") {
        issueToken(req, res).catch(() => writeHttpError(req, res, "INTERNAL"));
        return true;
      }
      const file = STATIC[path];
      if (!file || (req.method !== "GET" && req.method !== "HEAD")) return false;
      const data = load(file.file);
      res.writeHead(200, {
        "content-type": file.type,
        "content-length": data.length,
        "x-content-type-options": "nosniff",
        "content-security-policy":
          "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self'; img-src 'self' data:",
      });
      res.end(req.method === "HEAD" ? undefined : data);
      return true;
    },
  };
}
