import cluster from "node:cluster";
import http from "node:http";
import { availableParallelism } from "node:os";
import { createAdapter, setupPrimary } from "@socket.io/cluster-adapter";
import { setupMaster, setupWorker } from "@socket.io/sticky";
import { createBaselineServer } from "./baseline-app.mjs";
import { listen } from "./common.mjs";

/**
 * Baseline: the cluster recipe from the Socket.IO docs
 * (https://socket.io/docs/v4/cluster-adapter/ — @socket.io/sticky's
 * setupMaster in the primary, @socket.io/cluster-adapter between workers),
 * doing the same work as socket-server. The push API is served by the
 * workers behind sticky, on the same port, as in the recipe.
 *
 * One change to the recipe: the primary listens only once every worker has
 * started, so that the bench does not measure the recipe's start-up race
 * (connections handed to a worker still loading are lost).
 */
const workers = Number(process.env.WORKERS) || availableParallelism();

if (cluster.isPrimary) {
  const httpServer = http.createServer();
  setupMaster(httpServer, { loadBalancingMethod: "least-connection" });
  setupPrimary();
  cluster.setupPrimary({ serialization: "advanced" });
  let ready = 0;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on("message", (msg) => {
      if (msg?.bench !== "ready" || ++ready < workers) return;
      listen(httpServer);
    });
  }
  cluster.on("exit", (worker, code, signal) => {
    if (!stopping) {
      process.stderr.write(`worker ${worker.process.pid} died (${code ?? signal}); forking\n`);
      cluster.fork();
    }
  });
  let stopping = false;
  process.on("SIGTERM", () => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGTERM");
    httpServer.close();
    const wait = setInterval(() => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    }, 50);
    wait.unref();
  });
} else {
  createBaselineServer((io) => {
    io.adapter(createAdapter());
    setupWorker(io);
  });
  process.on("SIGTERM", () => process.exit(0));
  process.send({ bench: "ready" });
}
