import http from "node:http";

/**
 * A small reader for the Prometheus text exposition format, enough to check
 * a scrape number by number.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Scrape {
  text: string;
  samples: Sample[];
  /** Metric families from `# TYPE` lines: name → type. */
  types: Map<string, string>;
  /** The value of the one sample with exactly these labels (undefined if absent). */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** Sum over every sample of `name` whose labels include `filter`. */
  sum(name: string, filter?: Record<string, string>): number;
  /** Every series name a PromQL query could use (histogram _bucket/_sum/_count included). */
  seriesNames(): Set<string>;
}

const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

export function parseScrape(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ");
      if (name && type) types.set(name, type);
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const brace = line.indexOf("{");
    const space = line.lastIndexOf(" ");
    const name = brace === -1 ? line.slice(0, line.indexOf(" ")) : line.slice(0, brace);
    const labels: Record<string, string> = {};
    if (brace !== -1) {
      const body = line.slice(brace + 1, line.lastIndexOf("}"));
      for (const m of body.matchAll(LABEL)) labels[m[1]!] = m[2]!.replace(/\\(.)/g, "$1");
    }
    samples.push({ name, labels, value: Number(line.slice(space + 1)) });
  }
  const matches = (s: Sample, name: string, filter: Record<string, string>) =>
    s.name === name && Object.entries(filter).every(([k, v]) => s.labels[k] === v);
  return {
    text,
    samples,
    types,
    value(name, labels = {}) {
      const found = samples.filter(
        (s) =>
          matches(s, name, labels) && Object.keys(s.labels).length === Object.keys(labels).length,
      );
      return found.length === 1 ? found[0]!.value : undefined;
    },
    sum(name, filter = {}) {
      return samples.filter((s) => matches(s, name, filter)).reduce((n, s) => n + s.value, 0);
    },
    seriesNames() {
      const out = new Set<string>();
      for (const [name, type] of types) {
        out.add(name);
        if (type === "histogram" || type === "summary") {
          for (const suffix of ["_bucket", "_sum", "_count"]) out.add(`${name}${suffix}`);
        }
      }
      return out;
    },
  };
}

/**
 * GET /metrics on a connection of its own, as Prometheus does (the primary
 * closes connections it serves, so every scrape opens a fresh one).
 */
export function scrape(apiUrl: string): Promise<Scrape> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${apiUrl}/metrics`, { agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => {
        if (res.statusCode !== 200) reject(new Error(`/metrics answered ${res.statusCode}`));
        else resolve(parseScrape(body));
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.setTimeout(15_000, () => req.destroy(new Error("/metrics timed out")));
  });
}
