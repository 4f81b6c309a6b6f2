import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";

/**
 * The backend for bench/forward.mjs, in its own process so that its CPU is
 * not the load generator's: answers `POST /events` with a small JSON body
 * (mode "ok", after verifying the signature like a real backend would) or
 * 500 (mode "fail"); `POST /__mode` with `ok` or `fail` switches. Prints
 * `{"port":N}` once listening.
 */
const secret = process.env.BACKEND_SIGNING_SECRET;
let mode = "ok";
let served = 0;
let badSignatures = 0;
let connections = 0;

const verify = (header, body) => {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? "");
  if (!m) return false;
  const mac = createHmac("sha256", secret).update(`${m[1]}.${body}`).digest();
  return timingSafeEqual(Buffer.from(m[2], "hex"), mac);
};

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString();
    if (req.url === "/__mode") {
      mode = body.trim();
      res.end(JSON.stringify({ mode, served, badSignatures, connections }));
      return;
    }
    served++;
    if (mode === "fail") {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end("failing on purpose");
      return;
    }
    if (secret && !verify(req.headers["x-signature"], body)) badSignatures++;
    const out = JSON.stringify({ ok: 1, id: req.headers["x-request-id"] });
    res.writeHead(200, { "content-type": "application/json", "content-length": out.length });
    res.end(out);
  });
});
server.keepAliveTimeout = 60_000;
server.on("connection", () => connections++);
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on("SIGTERM", () => process.exit(0));
