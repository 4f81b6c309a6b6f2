import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { TEST_API_KEY, TEST_DASHBOARD_TOKEN, TEST_JWT_SECRET } from "./support/fixtures.js";
import { track, waitExit } from "./support/processes.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("start and stop", () => {
  it("refuses to start with an invalid configuration, one line per problem, no secret echoed", async () => {
    const child = spawn(process.execPath, ["dist/main.js"], {
      env: {
        PATH: process.env.PATH,
        NODE_ENV: "production",
        JWT_SECRET: "short-secret-value",
        WORKERS: "zero",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    track(child);
    let err = "";
    child.stderr!.on("data", (c) => (err += c));
    expect(await waitExit(child, 10_000)).toBe(2);
    expect(err).toContain('WORKERS: got "zero", expected');
    expect(err).toContain(
      "JWT_SECRET: got a secret value (not shown), expected at least 32 characters",
    );
    expect(err).not.toContain("short-secret-value");
  });

  it("`npm start` builds first (prestart), as the quick start needs from a fresh checkout", () => {
    const { scripts } = JSON.parse(
      readFileSync(new URL("../package.json", import.meta.url), "utf8"),
    ) as {
      scripts: Record<string, string>;
    };
    // The build itself ran before the tests (pretest) and dist/main.js is what they fork.
    expect(scripts["prestart"]).toMatch(/^npm run build\b/);
    expect(scripts["build"]).toMatch(/\btsc -p tsconfig\.json\b/);
  });

  it("`npm start` execs node, so SIGTERM to npm's process reaches the primary, which stops every process of the host with exit 0", async () => {
    // Without its prestart: the build ran before the tests, and the test above checks the wiring.
    const child = spawn("npm", ["start", "--silent", "--ignore-scripts"], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        PORT: "0",
        API_PORT: "0",
        HOST: "127.0.0.1",
        WORKERS: "2",
        JWT_SECRET: TEST_JWT_SECRET,
        API_KEYS: TEST_API_KEY,
        DASHBOARD_TOKEN: TEST_DASHBOARD_TOKEN,
        LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    track(child);
    let out = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ports line: ${out}`)), 60_000);
      child.stdout!.on("data", (c) => {
        out += c;
        if (out.includes('"msg":"ports"')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const tree = execFileSync("ps", ["-o", "pid=,args=", "-g", String(child.pid)]).toString();
    // The primary and its two workers.
    const hosts = tree.split("\n").filter((l) => l.includes("dist/main.js"));
    expect(hosts, tree).toHaveLength(3);
    child.kill("SIGTERM");
    expect(await waitExit(child, 20_000)).toBe(0);
    let left = "";
    try {
      left = execFileSync("ps", ["-o", "pid=", "-g", String(child.pid)], {
        encoding: "utf8",
      }).trim();
    } catch {
      // ps exits 1 when the group is empty: nothing left behind.
    }
    // Nothing left behind: the session holds npm, the primary and the workers.
    expect(left).toBe("");
    for (const line of hosts) expect(alive(Number.parseInt(line, 10))).toBe(false);
  }, 90_000);
});
