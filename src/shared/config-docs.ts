import { CONFIG_SCHEMA, CONFIG_VARIABLES, SECRET_VARIABLES, withDevDefaults } from "./config.js";

/**
 * docs/configuration.md's table, generated from the schema: each variable's
 * default and its `.describe()` text (`npm run docs:config`).
 * test/config-docs.test.ts fails when the file and the schema drift apart.
 */

/** What dev mode generates: the variables `withDevDefaults` fills with random bytes. */
export function generatedInDev(): ReadonlySet<string> {
  const mark = "(random)";
  const { env } = withDevDefaults({}, () => mark);
  return new Set(Object.keys(env).filter((name) => env[name]?.includes(mark)));
}

function shownDefault(name: string, value: unknown, generated: ReadonlySet<string>): string {
  if (name === "WORKERS") return "CPU count";
  if (generated.has(name)) return "dev: generated";
  if (SECRET_VARIABLES.has(name)) return "unset";
  if (value === undefined || (Array.isArray(value) && value.length === 0)) return "unset";
  return `\`${Array.isArray(value) ? value.join(",") : String(value)}\``;
}

/** The configuration table, in markdown. */
export function configTable(): string {
  const defaults = CONFIG_SCHEMA.parse({}) as Record<string, unknown>;
  const generated = generatedInDev();
  const rows = CONFIG_VARIABLES.map((name) => {
    const meaning = CONFIG_SCHEMA.shape[name].description ?? "(undocumented)";
    return `| \`${name}\` | ${shownDefault(name, defaults[name], generated)} | ${meaning} |`;
  });
  return ["| variable | default | meaning |", "|---|---|---|", ...rows].join("\n");
}
