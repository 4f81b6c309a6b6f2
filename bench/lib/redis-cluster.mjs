import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./redis.mjs";

/**
 * A Redis Cluster on this machine (the bench's twin of
 * test/support/redis-ha.ts): `masters` masters with one replica each, free
 * ports (bus ports too), config files in a temp dir; every node is killed
 * when the bench exits.
 */

/** Every node and temp dir this process made, removed when it exits (one listener for all). */
const started = new Set();
const dirs = new Set();
process.once("exit", () => {
  for (const p of started) p.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const cli = (port, ...args) =>
  execFileSync("redis-cli", ["-p", String(port), ...args], { timeout: 10_000 }).toString();

function launch(args) {
  return new Promise((resolve, reject) => {
    const proc = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    proc.stdout.on("data", (c) => {
      out += c;
      if (out.includes("Ready to accept connections")) resolve(proc);
    });
    proc.once("exit", (code) => {
      started.delete(proc);
      reject(new Error(`redis exited ${code}: ${out}`));
    });
    started.add(proc);
  });
}

export async function startRedisCluster({ masters = 3, nodeTimeoutMs = 1_000 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "ss-bench-rcluster-"));
  dirs.add(dir);
  const nodes = [];
  for (let i = 0; i < masters * 2; i++) {
    const port = await freePort();
    const bus = await freePort();
    const proc = await launch([
      ...["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      ...["--dir", dir, "--cluster-enabled", "yes", "--cluster-port", String(bus)],
      ...["--cluster-config-file", `nodes-${port}.conf`],
      ...["--cluster-node-timeout", String(nodeTimeoutMs)],
    ]);
    nodes.push({ port, proc });
  }
  execFileSync(
    "redis-cli",
    [
      "--cluster",
      "create",
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      "--cluster-replicas",
      "1",
      "--cluster-yes",
    ],
    { stdio: "ignore", timeout: 30_000 },
  );
  const alive = () => nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null);
  const healthy = () =>
    alive().every((n) => {
      try {
        return cli(n.port, "cluster", "info").includes("cluster_state:ok");
      } catch {
        return false;
      }
    });
  for (let i = 0; !healthy(); i++) {
    if (i > 200) throw new Error("the redis cluster did not become ok within 20 s");
    await new Promise((r) => setTimeout(r, 100));
  }
  /** [{ port, master, slots: [[lo, hi]…] }] as the first live node sees it. */
  const topology = () =>
    cli(alive()[0].port, "cluster", "nodes")
      .trim()
      .split("\n")
      .map((line) => line.split(" "))
      .filter((f) => !f[2].includes("fail"))
      .map((f) => ({
        port: Number(f[1].split("@")[0].split(":")[1]),
        master: f[2].includes("master"),
        slots: f.slice(8).map((r) => r.split("-").map(Number)),
      }));
  const stat = (port, section, field) =>
    Number(new RegExp(`${field}:(\\d+)`).exec(cli(port, "info", section))?.[1] ?? 0);
  return {
    seeds: nodes.map((n) => `127.0.0.1:${n.port}`).join(","),
    masterOf(key) {
      const slot = Number(cli(alive()[0].port, "cluster", "keyslot", key).trim());
      const owner = topology().find(
        (n) => n.master && n.slots.some(([lo, hi = lo]) => slot >= lo && slot <= hi),
      );
      if (!owner) throw new Error(`no master for slot ${slot}`);
      return owner.port;
    },
    masters: () =>
      topology()
        .filter((n) => n.master)
        .map((n) => n.port),
    /** Bytes every live node has sent to its clients (replication excluded in Redis 7). */
    outBytes: () =>
      alive().reduce((sum, n) => sum + stat(n.port, "stats", "total_net_output_bytes"), 0),
    /** PUBLISH messages the nodes sent each other over the cluster bus. */
    busPublishes: () =>
      alive().reduce(
        (sum, n) =>
          sum +
          Number(
            /cluster_stats_messages_publish_sent:(\d+)/.exec(cli(n.port, "cluster", "info"))?.[1] ??
              0,
          ),
        0,
      ),
    /** Subscriber connections that a message on `channel` reaches. */
    receivers(channel, sharded) {
      if (sharded) {
        const port = this.masterOf(channel);
        return Number(cli(port, "pubsub", "shardnumsub", channel).trim().split("\n")[1]);
      }
      // A classic PUBLISH reaches every node's subscribers (the bus forwards it).
      return alive().reduce(
        (sum, n) => sum + Number(cli(n.port, "pubsub", "numsub", channel).trim().split("\n")[1]),
        0,
      );
    },
    kill(port) {
      nodes.find((n) => n.port === port)?.proc.kill("SIGKILL");
    },
    async stop() {
      for (const n of nodes) {
        if (n.proc.exitCode !== null || n.proc.signalCode !== null) continue;
        const gone = new Promise((r) => n.proc.once("exit", r));
        n.proc.kill("SIGKILL");
        await gone;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
