import { readdirSync, readFileSync } from "node:fs";
import { clockTicks } from "./machine.mjs";

/**
 * What the kernel says about a process tree: the pids under a root, their
 * resident memory and their CPU time. Reading /proc keeps the measurement
 * outside the processes measured, the same for every target.
 */

function readStat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "latin1");
    // The command name (field 2) may hold spaces; fields are counted after its ")".
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(rest[1]), utime: Number(rest[11]), stime: Number(rest[12]) };
  } catch {
    return undefined;
  }
}

/** The root and every descendant, found through the parent pids in /proc. */
export function processTree(root) {
  const children = new Map();
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const st = readStat(pid);
    if (!st) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(pid);
    children.set(st.ppid, list);
  }
  const out = [];
  const walk = (pid) => {
    out.push(pid);
    for (const c of children.get(pid) ?? []) walk(c);
  };
  walk(root);
  return out;
}

/** VmRSS of one process in KB (0 if it is gone). */
export function rssKb(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Per-process RSS (KB) of a tree and the sum. */
export function treeRss(root) {
  const pids = processTree(root);
  const perPid = pids.map((pid) => ({ pid, rssKb: rssKb(pid) }));
  return { pids: perPid, totalKb: perPid.reduce((n, p) => n + p.rssKb, 0) };
}

/** CPU seconds (user + system) consumed so far by one process. */
export function cpuSeconds(pid) {
  const st = readStat(pid);
  return st ? (st.utime + st.stime) / clockTicks() : 0;
}

/**
 * Measures CPU use of a process tree over an interval: call `start()`, then
 * `stop()` returns the share of one core each process used (1.0 = one core).
 */
export function cpuMeter(root) {
  let t0 = 0;
  let before = new Map();
  return {
    start() {
      t0 = performance.now();
      before = new Map(processTree(root).map((pid) => [pid, cpuSeconds(pid)]));
    },
    stop() {
      const secs = (performance.now() - t0) / 1000;
      const perPid = processTree(root).map((pid) => ({
        pid,
        cores: (cpuSeconds(pid) - (before.get(pid) ?? 0)) / secs,
      }));
      return { perPid, totalCores: perPid.reduce((n, p) => n + p.cores, 0) };
    },
  };
}

/** CPU use of this load-generator process over an interval (all its threads). */
export function selfCpuMeter() {
  let t0 = 0;
  let u0 = process.cpuUsage();
  return {
    start() {
      t0 = performance.now();
      u0 = process.cpuUsage();
    },
    stop() {
      const u = process.cpuUsage(u0);
      return (u.user + u.system) / 1000 / (performance.now() - t0);
    },
  };
}

/**
 * Meters one run on a target (or several, summed): the CPU of its processes
 * and of this load generator from now until `stop()`, which returns
 * `{ serverCpu: { perPid, totalCores }, loadgenCores }`; given the lag
 * listener, `lag()` is the target's event-loop delay from now until then.
 */
export function loadMeter(targets, lag) {
  const list = [targets].flat();
  const cpus = list.map((t) => t.cpu());
  const self = selfCpuMeter();
  const from = lag?.now();
  for (const c of cpus) c.start();
  self.start();
  return {
    stop() {
      const parts = cpus.map((c) => c.stop());
      const serverCpu = {
        perPid: parts.flatMap((p) => p.perPid),
        totalCores: parts.reduce((n, p) => n + p.totalCores, 0),
      };
      return { serverCpu, loadgenCores: self.stop() };
    },
    lag: () => lag.between(from, lag.now(), list[0].serverRole),
  };
}
