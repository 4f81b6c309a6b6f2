import { readFileSync } from "node:fs";

/** Warns (loudly, before the load) when this process cannot open enough sockets. */
export function checkOpenFiles(clients) {
  const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync("/proc/self/limits", "latin1"));
  const soft = m?.[1] === "unlimited" ? Number.POSITIVE_INFINITY : Number(m?.[1] ?? 1024);
  const need = clients + 256;
  if (soft < need) {
    process.stderr.write(
      `warning: open files limit is ${soft}, ${clients} clients need about ${need}; ` +
        "run through the npm script (bench/with-fds.sh raises it) or `ulimit -n 65536`\n",
    );
  }
  return soft;
}
