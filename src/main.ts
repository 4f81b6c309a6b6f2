import cluster from "node:cluster";
import { randomBytes } from "node:crypto";
import { enableCompileCache, flushCompileCache } from "node:module";

// V8's compiled code for our modules and our dependencies' is kept on disk
// (in os.tmpdir() unless NODE_COMPILE_CACHE names a directory;
// NODE_DISABLE_COMPILE_CACHE=1 turns it off): a process started after the
// first one compiles less (a 2-worker server's start 1.97 → 1.62 CPU s), so
// a replaced worker is ready sooner. It is enabled before the modules below
// load, and written once start-up has compiled what it needs (Node would
// write it only at exit, which a long-lived primary and a killed worker never
// reach).
enableCompileCache();
setTimeout(flushCompileCache, 10_000).unref();
const { ConfigError, loadConfig, withDevDefaults } = await import("./shared/config.js");

// The entry point only switches between the two roles.
try {
  if (cluster.isPrimary) {
    const { env, generated } = withDevDefaults(process.env, (n) =>
      randomBytes(n).toString("base64url"),
    );
    const cfg = loadConfig(env);
    const { runPrimary } = await import("./primary/run-primary.js");
    await runPrimary({ cfg, env, generated });
  } else {
    const cfg = loadConfig(process.env);
    const { runWorker } = await import("./worker/run-worker.js");
    // A worker returns its exit code once stopped; only a crash cannot wait for that.
    process.exit(await runWorker(cfg, (code) => process.exit(code)));
  }
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`socket-server: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
