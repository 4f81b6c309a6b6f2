import cluster from "node:cluster";
import { randomBytes } from "node:crypto";
import { ConfigError, loadConfig, withDevDefaults } from "./shared/config.js";

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
