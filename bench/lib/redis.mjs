import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A free TCP port on the loopback address (free when asked). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * A redis-server (loopback, no persistence) on a free port that can be
 * killed and started again on the same port; killed when the bench exits.
 */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "ss-bench-redis-"));
  const settings = { port, bind: "127.0.0.1", save: "", appendonly: "no", dir };
  const args = Object.entries(settings).flatMap(([k, v]) => [`--${k}`, String(v)]);
  let proc;
  const launch = () =>
    new Promise((resolve, reject) => {
      proc = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      proc.stdout.on("data", (c) => {
        out += c;
        if (out.includes("Ready to accept connections")) resolve();
      });
      proc.once("exit", (code) => reject(new Error(`redis exited ${code}: ${out}`)));
    });
  await launch();
  const kill = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await gone;
  };
  process.once("exit", () => proc.kill("SIGKILL"));
  /** Bytes Redis has sent to its clients so far (pub/sub deliveries, mostly). */
  const outBytes = () => {
    const info = execFileSync("redis-cli", ["-p", String(port), "info", "stats"]).toString();
    return Number(/total_net_output_bytes:(\d+)/.exec(info)?.[1] ?? Number.NaN);
  };
  return { url: `redis://127.0.0.1:${port}`, kill, restart: launch, outBytes };
}
