import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { track, waitExit } from "./processes.js";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** A throwaway redis-server on loopback: this port, files in `dir`, nothing persisted. */
export const redisServerArgs = (port: number, dir: string): string[] => [
  ...["--port", String(port), "--bind", "127.0.0.1"],
  ...["--save", "", "--appendonly", "no", "--dir", dir],
];

export interface RedisServer {
  port: number;
  url: string;
  stop(): Promise<void>;
  /** Starts it again on the same port (after stop). */
  restart(): Promise<void>;
}

/** A real redis-server on a free port, no persistence, for tests that break it. */
export async function startRedis(extraArgs: string[] = []): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "ss-redis-"));
  let proc: ReturnType<typeof spawn> | undefined;
  const launch = async () => {
    proc = spawn("redis-server", [...redisServerArgs(port, dir), ...extraArgs], {
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    track(proc);
    await new Promise<void>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`redis did not start: ${out}`)), 10_000);
      proc!.stdout!.on("data", (c: Buffer) => {
        out += c.toString();
        if (out.includes("Ready to accept connections")) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc!.once("exit", (code) => reject(new Error(`redis exited ${code}: ${out}`)));
    });
  };
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (!proc || proc.exitCode !== null) return;
      proc.kill("SIGKILL");
      await waitExit(proc, 5_000);
    },
    restart: launch,
  };
}
