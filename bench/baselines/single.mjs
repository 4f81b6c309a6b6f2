import { createBaselineServer } from "./baseline-app.mjs";
import { listen } from "./common.mjs";

/**
 * Baseline: the plain single-process Socket.IO server a user would write,
 * doing the same work as socket-server (bench/baselines/baseline-app.mjs).
 * One port for Socket.IO and the push API. `PORT=0` picks a free port; the
 * chosen one is printed as a JSON line.
 */
const { httpServer, io } = createBaselineServer();
listen(httpServer);
process.on("SIGTERM", () => {
  io.close();
  process.exit(0);
});
