import cluster from "node:cluster";
import dgram from "node:dgram";
import { monitorEventLoopDelay } from "node:perf_hooks";
import v8 from "node:v8";
import { isMainThread } from "node:worker_threads";

/**
 * Loaded into every process of a target with
 * `NODE_OPTIONS=--import=<this file>` (bench/lib/targets.mjs does that), so
 * that the event-loop delay is measured the same way in socket-server and in
 * the baselines, without their cooperation. Every BENCH_PROBE_INTERVAL_MS it
 * sends one UDP datagram to the bench: this process's delay percentiles over
 * the interval and where its memory is (V8 heap spaces, external). It keeps
 * nothing alive and does nothing without BENCH_PROBE_PORT.
 */
const port = Number(process.env.BENCH_PROBE_PORT);
if (isMainThread && port > 0) {
  const interval = Number(process.env.BENCH_PROBE_INTERVAL_MS) || 250;
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  const sock = dgram.createSocket("udp4");
  sock.unref();
  sock.on("error", () => {});
  const role = cluster.isPrimary ? "primary" : "worker";
  // Diagnosis only (BENCH_PROBE_IPC=1): IPC messages sent, by kind.
  const ipc = process.env.BENCH_PROBE_IPC === "1" ? new Map() : undefined;
  if (ipc) {
    const kind = (m) => String(m?.cmd ?? m?.t ?? m?.type ?? m?.msg?.t ?? typeof m).slice(0, 40);
    const wrap = (target) => {
      const send = target._send;
      if (typeof send !== "function") return;
      target._send = function (message, ...rest) {
        const k = kind(message);
        ipc.set(k, (ipc.get(k) ?? 0) + 1);
        return send.call(this, message, ...rest);
      };
    };
    const count = (m) => {
      const k = `in ${kind(m)}`;
      ipc.set(k, (ipc.get(k) ?? 0) + 1);
    };
    if (cluster.isPrimary) {
      cluster.on("fork", (w) => wrap(w.process));
      cluster.on("message", (_w, m) => count(m));
    } else {
      wrap(process);
      process.on("message", count);
    }
  }
  const mb = (n) => Math.round(n / 1048576);
  // Diagnosis only (BENCH_TARGET_NODE_ARGS=--expose-gc BENCH_PROBE_GC=1): how
  // much of the resident memory is garbage not yet collected.
  const gc = process.env.BENCH_PROBE_GC === "1" ? globalThis.gc : undefined;
  setInterval(() => {
    gc?.();
    const mem = process.memoryUsage();
    const spaces = Object.fromEntries(
      v8.getHeapSpaceStatistics().map((s) => [s.space_name, mb(s.space_size)]),
    );
    const msg = JSON.stringify({
      pid: process.pid,
      role,
      p50: h.percentile(50) / 1e6,
      p99: h.percentile(99) / 1e6,
      max: h.max / 1e6,
      mem: {
        rss: mb(mem.rss),
        heapTotal: mb(mem.heapTotal),
        heapUsed: mb(mem.heapUsed),
        external: mb(mem.external),
        newSpace: spaces.new_space,
        oldSpace: spaces.old_space,
      },
      ...(ipc ? { ipc: Object.fromEntries(ipc) } : {}),
    });
    h.reset();
    sock.send(msg, port, "127.0.0.1");
  }, interval).unref();
}
