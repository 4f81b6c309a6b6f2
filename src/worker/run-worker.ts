import type { Config } from "../shared/config.js";
import { createLogRing } from "../shared/log-ring.js";
import { initLogger, loggerOptionsFrom } from "../shared/logger.js";
import { createWorker } from "./create-worker.js";
import { createWorkerChannel } from "./ipc-channel.js";

/**
 * The worker process around createWorker: its logger, the IPC channel,
 * signals and crash handlers. Resolves with the exit code once the worker
 * has stopped; main.ts exits with it. `exitNow` is main's, for the one case
 * that cannot wait: an uncaught exception.
 */
export async function runWorker(cfg: Config, exitNow: (code: number) => void): Promise<number> {
  const slot = Number(process.env["SS_SLOT"] ?? 0);
  const recentLogs = createLogRing();
  const log = initLogger(loggerOptionsFrom(cfg, { role: "worker", worker: slot }, recentLogs.push));
  process.on("uncaughtException", (err, origin) => {
    const mem = process.memoryUsage();
    log.fatal(
      {
        err,
        origin,
        uptimeSeconds: Math.round(process.uptime()),
        rssBytes: mem.rss,
        heapUsedBytes: mem.heapUsed,
      },
      "uncaught exception in worker; exiting so the primary restarts it",
    );
    log.flush(() => exitNow(1));
  });
  process.on("unhandledRejection", (reason) => {
    log.error({ err: reason }, "unhandled promise rejection");
  });

  // Every message to and from the primary goes through this one channel (ipc-channel.ts).
  const primary = createWorkerChannel(process);
  const worker = createWorker({ cfg, log, slot, primary, recentLogs });
  // SIGTERM/SIGINT reach workers too when the whole process group is signalled
  // (Ctrl-C); the primary drives the shutdown, so the worker waits for it.
  process.on("SIGINT", () => {});
  process.on("SIGTERM", () => void worker.shutdown(cfg.SHUTDOWN_TIMEOUT_MS));
  process.on("disconnect", () => void worker.shutdown(1_000));

  // A shutdown may come while the worker is starting: its deadline holds all the same.
  await Promise.race([worker.start(), worker.stopped]);
  // The first shutdown settles it, whoever asked: the primary, a signal or a lost channel.
  return worker.stopped;
}
