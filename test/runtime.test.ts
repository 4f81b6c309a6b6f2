import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";

/**
 * The suite runs on the Node that the Dockerfile ships: the `node`
 * devDependency puts that build first on npm scripts' PATH, and the servers
 * the tests spawn use `process.execPath`, so they run on it too.
 */

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  engines: { node: string };
  devDependencies: Record<string, string>;
};
const require = createRequire(import.meta.url);

describe("runtime", () => {
  it("is the Node major that package.json ships and declares", () => {
    console.log(`[figures] tests run on node ${process.version} (${process.execPath})`);
    const major = Number(process.versions.node.split(".")[0]);
    expect(pkg.devDependencies["node"]).toMatch(new RegExp(`^\\^${major}\\.`));
    expect(pkg.engines.node).toBe(`>=${major} <${major + 1}`);
    const dockerfile = readFileSync(new URL("../Dockerfile", import.meta.url), "utf8");
    for (const from of dockerfile.matchAll(/^FROM node:(\d+)/gm))
      expect(Number(from[1])).toBe(major);
  });

  it("loads the native builds of bufferutil and utf-8-validate (ws uses them when they load)", () => {
    // Both fall back to plain JavaScript silently when the addon does not load.
    const native = (fn: unknown) => String(fn).includes("[native code]");
    const { mask, unmask } = require("bufferutil") as { mask: unknown; unmask: unknown };
    expect(native(mask) && native(unmask)).toBe(true);
    expect(native(require("utf-8-validate"))).toBe(true);
  });
});
