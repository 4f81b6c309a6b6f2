import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { metrics, primaryMetrics } from "../src/shared/metrics.js";

// docs/operations.md's metrics table lists every metric defined in
// src/shared/metrics.ts with its type and labels, and nothing else.

interface Row {
  type: string;
  labels: string[];
}

function docRows(): Map<string, Row> {
  const doc = readFileSync(new URL("../docs/operations.md", import.meta.url), "utf8");
  const start = doc.indexOf("\n## Metrics");
  expect(start).toBeGreaterThan(0);
  const end = doc.indexOf("\n## ", start + 1);
  const section = doc.slice(start, end === -1 ? undefined : end);
  const rows = new Map<string, Row>();
  for (const line of section.split("\n")) {
    const m = /^\| `(socket_server_[a-z0-9_]+)` \| (\w+) \| ([^|]*) \|/.exec(line);
    if (!m) continue;
    const labels = [...m[3]!.matchAll(/`(\w+)`/g)].map((x) => x[1]!);
    rows.set(m[1]!, { type: m[2]!, labels });
  }
  return rows;
}

describe("docs/operations.md metrics table", () => {
  it("documents every metric with its type and labels, and only those", () => {
    const defined = new Map<string, Row>();
    for (const m of [...Object.values(metrics), ...Object.values(primaryMetrics)]) {
      const metric = m as unknown as { name: string; labelNames?: string[] };
      defined.set(metric.name, {
        type: m.constructor.name.toLowerCase(),
        labels: [...(metric.labelNames ?? [])],
      });
    }
    const documented = docRows();
    expect(documented.size).toBeGreaterThan(30);
    expect([...defined.keys()].filter((n) => !documented.has(n))).toEqual([]);
    expect([...documented.keys()].filter((n) => !defined.has(n))).toEqual([]);
    for (const [name, row] of defined) expect(documented.get(name), name).toEqual(row);
  });
});
