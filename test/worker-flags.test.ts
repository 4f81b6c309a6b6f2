import { describe, expect, it } from "vitest";
import { workerExecArgv } from "../src/primary/run-primary.js";

// WORKER_SEMI_SPACE_MB reaching real workers' command lines is checked on
// metrics.test.ts's forked cluster; here, how the flags are put together.
describe("the workers' node flags (WORKER_SEMI_SPACE_MB)", () => {
  it("add a small young generation, none when set to 0", () => {
    expect(workerExecArgv([], 4)).toEqual(["--max-semi-space-size=4"]);
    expect(workerExecArgv(["--enable-source-maps"], 0)).toEqual(["--enable-source-maps"]);
  });

  it("leave a --max-semi-space-size given to the primary alone", () => {
    expect(workerExecArgv(["--max-semi-space-size=8"], 1)).toEqual(["--max-semi-space-size=8"]);
    expect(workerExecArgv(["--inspect"], 2)).toEqual(["--inspect", "--max-semi-space-size=2"]);
  });
});
