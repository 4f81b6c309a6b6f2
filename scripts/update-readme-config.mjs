// Regenerates the README's configuration table from the schema
// (src/shared/config-docs.ts). Run after `npm run build`: npm run docs:config
import { readFileSync, writeFileSync } from "node:fs";
import { configTable } from "../dist/shared/config-docs.js";

const START = "<!-- config-table:start -->";
const END = "<!-- config-table:end -->";
const path = new URL("../README.md", import.meta.url);
const readme = readFileSync(path, "utf8");
const a = readme.indexOf(START);
const b = readme.indexOf(END);
if (a === -1 || b === -1) throw new Error("README has no config-table markers");
writeFileSync(path, `${readme.slice(0, a + START.length)}\n${configTable()}\n${readme.slice(b)}`);
console.log("README configuration table updated");
