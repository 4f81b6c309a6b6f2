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

// The layers (docs/architecture.md): primary/, worker/ and client/ import
// shared/ and never each other; shared/ imports none of them.
describe("imports between the layers", () => {
  const IMPORT = /\bfrom\s+["'](\.[^"']+)["']|\bimport\(\s*["'](\.[^"']+)["']\s*\)/g;
  const layerOf = (file: string) => file.split("/")[0]!;
  const allowed: Record<string, string[]> = {
    primary: ["primary", "shared"],
    worker: ["worker", "shared"],
    client: ["client", "shared"],
    shared: ["shared"],
  };

  it.each(Object.keys(allowed))("src/%s imports only what it may", (dir) => {
    const crossing: string[] = [];
    for (const file of sources(dir)) {
      const text = readFileSync(join(root, file), "utf8");
      for (const m of text.matchAll(IMPORT)) {
        const target = join(file, "..", m[1] ?? m[2]!);
        if (!allowed[dir]!.includes(layerOf(target))) crossing.push(`${file} → ${target}`);
      }
    }
    expect(crossing).toEqual([]);
  });

  it("finds the imports it checks (a worker file imports shared/)", () => {
    const text = readFileSync(join(root, "worker/create-worker.ts"), "utf8");
    const targets = [...text.matchAll(IMPORT)].map((m) => layerOf(join("worker", m[1] ?? m[2]!)));
    expect(targets).toContain("shared");
  });
});
