import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type http from "node:http";
import { gzipSync } from "node:zlib";
import { writeHttpError } from "../../shared/http-error.js";

/**
 * Serves the browser client bundle (dist/client/client.js, built by esbuild
 * in `npm run build`) at `/client.js` on the public port, in every mode: it
 * is the product's client, not a demo. Read and gzipped once, on first use.
 */

const BUNDLE = new URL("../../client/client.js", import.meta.url);

interface Bundle {
  plain: Buffer;
  gzip: Buffer;
  etag: string;
}

export function createClientScript(file: URL = BUNDLE) {
  let bundle: Bundle | null | undefined;
  const load = (): Bundle | null => {
    if (bundle !== undefined) return bundle;
    try {
      const plain = readFileSync(file);
      const etag = `"${createHash("sha256").update(plain).digest("base64url").slice(0, 22)}"`;
      bundle = { plain, gzip: gzipSync(plain, { level: 9 }), etag };
    } catch {
      bundle = null; // not built: answer 404 rather than crash
    }
    return bundle;
  };

  return {
    /** True if it answered the request. */
    handle(req: http.IncomingMessage, res: http.ServerResponse): boolean {
      const path = (req.url ?? "/").split("?")[0];
      if (path !== "/client.js" || (req.method !== "GET" && req.method !== "HEAD")) return false;
      const b = load();
      if (!b) {
        writeHttpError(req, res, "NOT_FOUND", "client bundle not built");
        return true;
      }
      const headers: http.OutgoingHttpHeaders = {
        "content-type": "text/javascript; charset=utf-8",
        "cache-control": "public, max-age=300",
        etag: b.etag,
        vary: "accept-encoding",
        "x-content-type-options": "nosniff",
        // A module script from another origin needs CORS; the file is public.
        "access-control-allow-origin": "*",
      };
      if (req.headers["if-none-match"] === b.etag) {
        res.writeHead(304, headers);
        res.end();
        return true;
      }
      const gzip = /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
      const body = gzip ? b.gzip : b.plain;
      res.writeHead(200, {
        ...headers,
        ...(gzip ? { "content-encoding": "gzip" } : {}),
        "content-length": body.length,
      });
      res.end(req.method === "HEAD" ? undefined : body);
      return true;
    },
  };
}
