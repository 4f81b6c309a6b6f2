import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { workerExecArgv } from "../src/primary/run-primary.js";
import { type RunningServer, startServer, workerPids } from "./support/server.js";

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");

describe("the workers' node flags (WORKER_SEMI_SPACE_MB)", () => {
  let server: RunningServer | undefined;
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  it("run every worker with a small young generation, and none when set to 0", async () => {
    server = await startServer({ workers: 2 });
    for (const pid of await workerPids(server)) {
      expect(cmdline(pid)).toContain("--max-semi-space-size=4");
    }
    await server.stop();
    server = await startServer({ workers: 1, env: { WORKER_SEMI_SPACE_MB: "0" } });
    const [pid] = await workerPids(server);
    expect(cmdline(pid!).some((a) => a.startsWith("--max-semi-space-size"))).toBe(false);
  });

  it("leave a --max-semi-space-size given to the primary alone", () => {
    expect(workerExecArgv(["--max-semi-space-size=8"], 1)).toEqual(["--max-semi-space-size=8"]);
    expect(workerExecArgv(["--inspect"], 2)).toEqual(["--inspect", "--max-semi-space-size=2"]);
  });
});
