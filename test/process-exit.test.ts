import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// Only main.ts and src/primary/ end the process (STYLE.md §12): a worker
// returns its exit code to main.ts, and shared code never exits.
const root = fileURLToPath(new URL("../src/", import.meta.url));
const EXIT = /\bprocess\s*(?:\.\s*exit|\[\s*["'`]exit["'`]\s*\])\s*\(/;

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .map((f) => join(dir, f));
}

describe("process exit", () => {
  it.each(["worker", "shared"])("is never called in src/%s", (dir) => {
    const files = sources(dir);
    expect(files.length).toBeGreaterThan(0);
    const calling = files.filter((f) => EXIT.test(readFileSync(join(root, f), "utf8")));
    expect(calling).toEqual([]);
  });
  it("is called by main.ts (so the pattern above does find a call)", () => {
    expect(readFileSync(join(root, "main.ts"), "utf8")).toMatch(EXIT);
  });
});
