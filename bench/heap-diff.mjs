import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

/**
 * What a V8 heap snapshot holds, grouped by object type, and the difference
 * between two: `node bench/heap-diff.mjs before.heapsnapshot after.heapsnapshot [N]`
 * prints, per type, how many more objects and bytes (self size) the second
 * holds, divided by N (e.g. the connections added between the two), largest
 * first. Types are named as DevTools' "Statistics"/"Summary" would: the
 * constructor of an object, `(closure) name` for a function, `(string)`,
 * `(array)`, `(code)`, `system / Context` and the like.
 *
 * Self size, not retained size: the bytes each object itself takes, so the
 * rows add up to the heap's growth.
 */

const STRINGS = new Set(["string", "concatenated string", "sliced string"]);

/** Type → { count, bytes } of one snapshot file. */
export function heapStats(file) {
  const snap = JSON.parse(readFileSync(file, "utf8"));
  const meta = snap.snapshot.meta;
  const fields = meta.node_fields;
  const types = meta.node_types[0];
  const F = fields.length;
  const iType = fields.indexOf("type");
  const iName = fields.indexOf("name");
  const iSize = fields.indexOf("self_size");
  const { nodes, strings } = snap;
  const by = new Map();
  let total = 0;
  for (let i = 0; i < nodes.length; i += F) {
    const type = types[nodes[i + iType]];
    const name = strings[nodes[i + iName]];
    const size = nodes[i + iSize];
    let key;
    if (type === "object" || type === "native") key = name;
    else if (type === "closure") key = `(closure) ${name || "anonymous"}`;
    else if (STRINGS.has(type)) key = "(string)";
    else if (type === "hidden" || type === "array" || type === "code" || type === "object shape")
      key = `(${type}) ${name.startsWith("system /") ? name : ""}`.trim();
    else key = `(${type})`;
    const s = by.get(key) ?? { count: 0, bytes: 0 };
    s.count += 1;
    s.bytes += size;
    by.set(key, s);
    total += size;
  }
  return { by, total, nodes: nodes.length / F };
}

/** Rows of the difference `after - before`, per `per` (units added), largest bytes first. */
export function heapDiff(before, after, per = 1) {
  const keys = new Set([...before.by.keys(), ...after.by.keys()]);
  const rows = [];
  for (const key of keys) {
    const a = before.by.get(key) ?? { count: 0, bytes: 0 };
    const b = after.by.get(key) ?? { count: 0, bytes: 0 };
    rows.push({ type: key, count: (b.count - a.count) / per, bytes: (b.bytes - a.bytes) / per });
  }
  rows.sort((x, y) => y.bytes - x.bytes);
  return { rows, totalBytes: (after.total - before.total) / per };
}

export function formatDiff(diff, limit = 30, minBytes = 8) {
  const lines = ["| type | objects per unit | bytes per unit |", "|---|---:|---:|"];
  let shown = 0;
  let rest = 0;
  for (const r of diff.rows) {
    if (shown < limit && Math.abs(r.bytes) >= minBytes) {
      lines.push(
        `| ${r.type.replaceAll("|", "\\|")} | ${r.count.toFixed(2)} | ${r.bytes.toFixed(0)} |`,
      );
      shown++;
    } else rest += r.bytes;
  }
  lines.push(`| (everything else) | | ${rest.toFixed(0)} |`);
  lines.push(`| **total** | | **${diff.totalBytes.toFixed(0)}** |`);
  return lines.join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const [before, after, per = "1", limit = "30"] = process.argv.slice(2);
  if (!before || !after) {
    process.stderr.write(
      "usage: node bench/heap-diff.mjs before.heapsnapshot after.heapsnapshot [N] [rows]\n",
    );
    process.exit(2);
  }
  const diff = heapDiff(heapStats(before), heapStats(after), Number(per));
  process.stdout.write(`${formatDiff(diff, Number(limit))}\n`);
}
