import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { join } from "node:path";

/**
 * Loaded into server processes with `NODE_OPTIONS=--import=<this file>` when
 * BENCH_CPU_PROFILE_DIR is set (node refuses --cpu-prof in NODE_OPTIONS).
 * SIGWINCH starts the V8 CPU profiler, the next SIGWINCH writes
 * `<dir>/<pid>.cpuprofile` (open it in Chrome DevTools), so a bench can
 * profile exactly one phase.
 */
const dir = process.env.BENCH_CPU_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  let running = false;
  process.on("SIGWINCH", () => {
    if (!running) {
      running = true;
      session.post("Profiler.enable", () => session.post("Profiler.start"));
      return;
    }
    running = false;
    session.post("Profiler.stop", (err, res) => {
      if (!err) writeFileSync(join(dir, `${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
