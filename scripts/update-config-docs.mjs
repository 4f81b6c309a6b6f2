// Regenerates docs/configuration.md's table from the schema's defaults and
// `.describe()` texts (src/shared/config-docs.ts). Run after `npm run build`:
// npm run docs:config
import { readFileSync, writeFileSync } from "node:fs";
import { configTable } from "../dist/shared/config-docs.js";

const START = "<!-- config-table:start -->";
const END = "<!-- config-table:end -->";
const path = new URL("../docs/configuration.md", import.meta.url);
const doc = readFileSync(path, "utf8");
const a = doc.indexOf(START);
const b = doc.indexOf(END);
if (a === -1 || b === -1) throw new Error("docs/configuration.md has no config-table markers");
writeFileSync(path, `${doc.slice(0, a + START.length)}\n${configTable()}\n${doc.slice(b)}`);
console.log("docs/configuration.md: configuration table updated");
