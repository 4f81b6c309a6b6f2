import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CONFIG_VARIABLES } from "../src/shared/config.js";
import { CONFIG_DESCRIPTIONS, configTable } from "../src/shared/config-docs.js";

describe("the README's configuration table", () => {
  it("describes every variable of the schema, and nothing else", () => {
    expect(Object.keys(CONFIG_DESCRIPTIONS).sort()).toEqual([...CONFIG_VARIABLES].sort());
  });
  it("is the table generated from the schema (run `npm run docs:config`)", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const start = readme.indexOf("<!-- config-table:start -->");
    const end = readme.indexOf("<!-- config-table:end -->");
    expect(start).toBeGreaterThan(0);
    const inReadme = readme.slice(start + "<!-- config-table:start -->".length, end).trim();
    expect(inReadme).toBe(configTable());
  });
  it("documents every variable the contract names", () => {
    for (const v of [
      "PORT",
      "API_PORT",
      "HOST",
      "WORKERS",
      "JWT_SECRET",
      "JWT_PUBLIC_KEY",
      "JWT_JWKS_URL",
      "JWT_ISSUER",
      "JWT_AUDIENCE",
      "JWT_ALGORITHMS",
      "API_KEYS",
      "BACKEND_URL",
      "BACKEND_SIGNING_SECRET",
      "REDIS_URL",
      "LOG_LEVEL",
      "LOG_DIR",
      "CORS_ORIGINS",
      "DASHBOARD_TOKEN",
      "NODE_ENV",
    ]) {
      expect(CONFIG_VARIABLES).toContain(v);
    }
  });
});
