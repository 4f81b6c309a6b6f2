import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { fileURLToPath } from "node:url";

/** The machine and the code a result was measured on, written into every result. */

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

let ticks;
export function clockTicks() {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

function tryRead(path, fallback = "") {
  try {
    return readFileSync(path, "latin1");
  } catch {
    return fallback;
  }
}

function git(args) {
  try {
    return execFileSync("git", args, { cwd: ROOT, stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .trim();
  } catch {
    return "";
  }
}

function openFilesLimit() {
  const m = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(tryRead("/proc/self/limits"));
  return m ? { soft: m[1], hard: m[2] } : undefined;
}

export function machineInfo() {
  const cpuinfo = tryRead("/proc/cpuinfo");
  const model = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? "unknown";
  const dirty = git(["status", "--porcelain", "--untracked-files=no"]).length > 0;
  return {
    cpus: availableParallelism(),
    cpuModel: model,
    memoryMb: Math.round(totalmem() / 1048576),
    node: process.version,
    commit: git(["rev-parse", "--short", "HEAD"]) || "unknown",
    // Other work in the same tree (uncommitted) is part of what was measured.
    dirtyTree: dirty,
    openFiles: openFilesLimit(),
    ephemeralPorts: tryRead("/proc/sys/net/ipv4/ip_local_port_range").trim().replace(/\s+/, "-"),
    loadAverage: tryRead("/proc/loadavg").split(" ").slice(0, 3).join(" "),
  };
}

export function describeMachine(m = machineInfo()) {
  return (
    `${m.cpus} CPUs (${m.cpuModel}), ${m.memoryMb} MB, Node ${m.node}, ` +
    `commit ${m.commit}${m.dirtyTree ? " + uncommitted changes" : ""}, ` +
    `open files ${m.openFiles?.soft ?? "?"}, ephemeral ports ${m.ephemeralPorts}, ` +
    `load average ${m.loadAverage}`
  );
}
