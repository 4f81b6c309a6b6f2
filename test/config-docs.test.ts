import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { CONFIG_SCHEMA, CONFIG_VARIABLES } from "../src/shared/config.js";
import { configTable, generatedInDev } from "../src/shared/config-docs.js";

const DOC = new URL("../docs/configuration.md", import.meta.url);
const START = "<!-- config-table:start -->";
const END = "<!-- config-table:end -->";

describe("the configuration table", () => {
  it("has a description for every variable of the schema", () => {
    const undescribed = CONFIG_VARIABLES.filter((name) => !CONFIG_SCHEMA.shape[name].description);
    expect(undescribed).toEqual([]);
  });
  it("reads descriptions through the wrappers the schema uses", () => {
    const outer = new Set(CONFIG_VARIABLES.map((name) => CONFIG_SCHEMA.shape[name].def.type));
    expect(outer).toContain("default");
    expect(outer).toContain("optional");
    const csv = z.string().transform((s) => s.split(","));
    for (const schema of [
      z.coerce.number().default(1).describe("d"),
      z.string().optional().describe("d"),
      csv.pipe(z.array(z.string())).describe("d"),
      csv.pipe(z.array(z.string())).default([]).describe("d"),
    ])
      expect(schema.description).toBe("d");
    // Given inside a wrapper, a description is lost: `.describe()` comes last.
    expect(z.coerce.number().describe("d").default(1).description).toBeUndefined();
  });
  it("marks as generated in dev what withDevDefaults fills in", () => {
    expect([...generatedInDev()].sort()).toEqual(["API_KEYS", "DASHBOARD_TOKEN", "JWT_SECRET"]);
    expect(configTable()).toContain("| `JWT_SECRET` | dev: generated |");
    expect(configTable()).toContain("| `DEMO` | unset |");
  });
  it("is the table generated from the schema (run `npm run docs:config`)", () => {
    const doc = readFileSync(DOC, "utf8");
    const start = doc.indexOf(START);
    const end = doc.indexOf(END);
    expect(start).toBeGreaterThan(0);
    expect(doc.slice(start + START.length, end).trim()).toBe(configTable());
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
