/**
 * Benchmark settings come from the environment, each with a default and a
 * line of description, and are printed before any load starts so that a
 * result can always be reproduced from its own output.
 */

export function knobs(spec) {
  const values = {};
  for (const [name, [fallback, _description]] of Object.entries(spec)) {
    const raw = process.env[name];
    if (raw === undefined || raw === "") {
      values[name] = fallback;
    } else if (typeof fallback === "number") {
      const n = Number(raw);
      if (!Number.isFinite(n)) throw new Error(`${name}: expected a number, got "${raw}"`);
      values[name] = n;
    } else if (Array.isArray(fallback)) {
      // "none": an empty list (an empty value means the default).
      values[name] = (raw === "none" ? "" : raw)
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      if (typeof fallback[0] === "number") values[name] = values[name].map(Number);
    } else {
      values[name] = raw;
    }
  }
  return values;
}

/** Reads the settings of `spec` and prints them under `title`, before any load starts. */
export function settings(title, spec) {
  const values = knobs(spec);
  printKnobs(title, spec, values);
  return values;
}

export function printKnobs(title, spec, values) {
  const lines = [`# ${title}`, "", "settings (environment variables):"];
  for (const [name, [, description]] of Object.entries(spec)) {
    const v = values[name];
    lines.push(`  ${name}=${Array.isArray(v) ? v.join(",") : v}  — ${description}`);
  }
  process.stdout.write(`${lines.join("\n")}\n\n`);
}

/** Knobs every bench shares: which targets, how many interleaved rounds. */
export const COMMON = {
  BENCH_TARGETS: [
    ["socket-server", "single", "docs-cluster", "bare-ws"],
    "targets, in the order of the first round (rotated each round)",
  ],
  BENCH_ROUNDS: [3, "interleaved rounds: each round runs every target once (figures are medians)"],
  BENCH_WORKERS: [2, "worker processes of socket-server and of the docs cluster"],
};
