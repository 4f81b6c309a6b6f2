import { createHash, timingSafeEqual } from "node:crypto";
import type { NextFunction, Request, Response } from "express";
import { sendError } from "./http-errors.js";

/**
 * `Authorization: Bearer <key>`, compared in constant time: both sides are
 * hashed to 32 bytes first, so neither the key nor its length leaks through
 * timing.
 */
export function createApiKeyCheck(keys: readonly string[]) {
  const digests = keys.map((k) => createHash("sha256").update(k).digest());
  const valid = (presented: string): boolean => {
    const d = createHash("sha256").update(presented).digest();
    let ok = false;
    for (const k of digests) ok = timingSafeEqual(d, k) || ok;
    return ok;
  };
  return {
    valid,
    middleware(req: Request, res: Response, next: NextFunction): void {
      const header = req.headers.authorization;
      const m = typeof header === "string" ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
      if (!m || !valid(m[1]!)) {
        res.setHeader("www-authenticate", 'Bearer realm="socket-server"');
        sendError(res, "UNAUTHORIZED", m ? "the API key is not valid" : "missing bearer API key");
        return;
      }
      res.locals["apiKeyId"] = createHash("sha256").update(m[1]!).digest("hex").slice(0, 12);
      next();
    },
  };
}
