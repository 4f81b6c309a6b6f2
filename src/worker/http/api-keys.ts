import { createHash, timingSafeEqual } from "node:crypto";
import type { NextFunction, Request, Response } from "express";
import { sendError } from "./express-errors.js";

/**
 * `Authorization: Bearer <key>`, compared in constant time: both sides are
 * hashed to 32 bytes first, so neither the key nor its length leaks through
 * timing.
 */
export function createApiKeyCheck(keys: readonly string[]) {
  const digests = keys.map((k) => createHash("sha256").update(k).digest());
  /** The presented key's id (a digest prefix, safe to log and count) when it is valid. */
  const idOf = (presented: string): string | undefined => {
    const d = createHash("sha256").update(presented).digest();
    let ok = false;
    for (const k of digests) ok = timingSafeEqual(d, k) || ok;
    return ok ? d.toString("hex").slice(0, 12) : undefined;
  };
  const bearer = (header: unknown): string | undefined =>
    typeof header === "string" ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
  return {
    /** The key id of an `Authorization` header with a valid key, else undefined. */
    identify(header: unknown): string | undefined {
      const presented = bearer(header);
      return presented === undefined ? undefined : idOf(presented);
    },
    middleware(req: Request, res: Response, next: NextFunction): void {
      const presented = bearer(req.headers.authorization);
      const keyId = presented === undefined ? undefined : idOf(presented);
      if (keyId === undefined) {
        res.setHeader("www-authenticate", 'Bearer realm="socket-server"');
        sendError(
          res,
          "UNAUTHORIZED",
          presented === undefined ? "missing bearer API key" : "the API key is not valid",
        );
        return;
      }
      res.locals["apiKeyId"] = keyId;
      next();
    },
  };
}
