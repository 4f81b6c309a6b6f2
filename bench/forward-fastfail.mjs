import pino from "pino";
import { loadConfig } from "../dist/shared/config.js";
import { createHttpForwarder } from "../dist/worker/forward/http-forwarder.js";
import { settings } from "./lib/knobs.mjs";
import { describeMachine } from "./lib/machine.mjs";
import { Recorder } from "./lib/stats.mjs";

/**
 * The forwarder's own cost of a fast-fail, in one process, without Socket.IO
 * or the network: a forwarder pointed at a closed port opens its breaker,
 * then FF_CALLS events are forwarded with FF_CONCURRENCY outstanding, each
 * timed from the forward() call to its answer. This is the server-side part
 * of what bench/forward.mjs measures end to end in its "breaker open" phase.
 *
 * Run: npm run build && node bench/forward-fastfail.mjs
 */
const SPEC = {
  FF_CALLS: [200_000, "forwards timed while the breaker is open"],
  FF_CONCURRENCY: [1, "forwards outstanding at a time"],
};

const o = settings("bench: forwarder fast-fail with the breaker open (in process)", SPEC);
const url = "http://127.0.0.1:1"; // nothing listens on port 1: connection refused
const cfg = loadConfig({
  JWT_SECRET: "bench-only-secret-0123456789abcdefgh",
  API_KEYS: "bench-only-api-key-0123",
  DASHBOARD_TOKEN: "bench-only-dashboard-0123",
  BACKEND_URL: url,
  BACKEND_RETRY_BASE_DELAY_MS: "1",
  BACKEND_BREAKER_HALF_OPEN_MS: "600000",
});
const forwarder = createHttpForwarder({ cfg, log: pino({ level: "error" }), backendUrl: url });
const event = (i) => ({
  id: `id-${i}`,
  event: "bench:event",
  payload: { text: "x".repeat(200), n: i },
  userId: "u0",
  socketId: "s0",
  rooms: ["user:u0"],
  receivedAt: new Date().toISOString(),
});

let opened = 0;
while (forwarder.status().breaker !== "open") {
  await forwarder.forward(event(opened++));
  if (opened > 100) throw new Error("the breaker did not open");
}
const latency = new Recorder(o.FF_CALLS);
let next = 0;
const codes = {};
const t0 = performance.now();
await Promise.all(
  Array.from({ length: o.FF_CONCURRENCY }, async () => {
    while (next < o.FF_CALLS) {
      const i = next++;
      const s = performance.now();
      const r = await forwarder.forward(event(i));
      latency.add((performance.now() - s) * 1000);
      const k = r.ok ? "ok" : r.error.code;
      codes[k] = (codes[k] ?? 0) + 1;
    }
  }),
);
const seconds = (performance.now() - t0) / 1000;
const l = latency.summary();
await forwarder.close(100);
process.stdout.write(
  `machine: ${describeMachine()}\n` +
    `breaker opened after ${opened} events (connection refused, ${cfg.BACKEND_MAX_ATTEMPTS} attempts each)\n` +
    `${o.FF_CALLS} fast-fails in ${seconds.toFixed(2)} s: ${Math.round(o.FF_CALLS / seconds)} per second; ` +
    `latency µs p50 ${l.p50.toFixed(1)}, p99 ${l.p99.toFixed(1)}, max ${l.max.toFixed(0)}; ` +
    `acks ${JSON.stringify(codes)}\n`,
);
