import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { track, waitExit } from "./processes.js";
import { freePort, redisServerArgs } from "./redis.js";
import { waitFor } from "./wait.js";

/**
 * Real Redis tiers that fail over, for the multi-host tests and the bench:
 * a Redis Cluster (`--cluster-enabled yes`, `redis-cli --cluster create`)
 * and a Sentinel set (one master, one replica, three sentinels). Every
 * process gets free ports (the cluster bus port too) and a temp dir for its
 * config files; `stop()` kills them all and waits for their exits.
 */

const run = promisify(execFile);

export async function redisCli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run("redis-cli", ["-p", String(port), ...args], { timeout: 10_000 });
  return stdout;
}

interface Node {
  port: number;
  proc: ChildProcess;
  pid: number;
}

async function launch(args: string[], port: number, dir: string): Promise<Node> {
  const proc = spawn("redis-server", args, {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
    cwd: dir,
  });
  track(proc);
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => {
    out += c.toString();
  });
  proc.stderr!.on("data", (c: Buffer) => {
    out += c.toString();
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`redis ${port} did not start: ${out}`)),
      10_000,
    );
    const check = () => {
      if (/Ready to accept connections|Sentinel ID is/.test(out)) {
        clearTimeout(timer);
        proc.stdout!.off("data", check);
        resolve();
      }
    };
    proc.stdout!.on("data", check);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`redis ${port} exited ${code}: ${out}`));
    });
  });
  return { port, proc, pid: proc.pid! };
}

async function stopAll(nodes: Node[], dir: string): Promise<void> {
  await Promise.all(
    nodes.map(async (n) => {
      if (n.proc.exitCode !== null || n.proc.signalCode !== null) return;
      n.proc.kill("SIGKILL");
      await waitExit(n.proc, 5_000);
    }),
  );
  rmSync(dir, { recursive: true, force: true });
}

export interface RedisClusterTier {
  /** "127.0.0.1:p1,127.0.0.1:p2,…" (every node, masters and replicas). */
  seeds: string;
  ports: number[];
  /** The port of the master that serves `key`'s slot now. */
  masterOf(key: string): Promise<number>;
  /**
   * Moves `key`'s slot to another master, as a resharding does (IMPORTING,
   * MIGRATING, MIGRATE of its keys, SETSLOT NODE everywhere); resolves with
   * the ports it moved from and to.
   */
  moveSlotOf(key: string): Promise<{ from: number; to: number }>;
  /** A planned failover: CLUSTER FAILOVER on a replica of `key`'s master; resolves with the new master's port. */
  switchover(key: string): Promise<number>;
  /** kill -9 of the node on `port`. */
  kill(port: number): void;
  /** Resolves once every live node sees the cluster as ok and `port` as a master of slots. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** `masters` masters with one replica each; `nodeTimeoutMs` is cluster-node-timeout. */
export async function startRedisCluster(
  opts: { masters?: number; nodeTimeoutMs?: number } = {},
): Promise<RedisClusterTier> {
  const count = (opts.masters ?? 3) * 2;
  const dir = mkdtempSync(join(tmpdir(), "ss-rcluster-"));
  const nodes: Node[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const port = await freePort();
      const busPort = await freePort();
      nodes.push(
        await launch(
          [
            ...redisServerArgs(port, dir),
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            String(busPort),
            "--cluster-config-file",
            `nodes-${port}.conf`,
            "--cluster-node-timeout",
            String(opts.nodeTimeoutMs ?? 1_000),
            // A replica takes over however long it was cut off (tests kill masters at will).
            "--cluster-replica-validity-factor",
            "0",
          ],
          port,
          dir,
        ),
      );
    }
    await run(
      "redis-cli",
      [
        "--cluster",
        "create",
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        "--cluster-replicas",
        "1",
        "--cluster-yes",
      ],
      { timeout: 30_000 },
    );
  } catch (err) {
    await stopAll(nodes, dir);
    throw err;
  }
  const alive = () => nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null);
  const tier: RedisClusterTier = {
    seeds: nodes.map((n) => `127.0.0.1:${n.port}`).join(","),
    ports: nodes.map((n) => n.port),
    async masterOf(key) {
      const from = alive()[0]!.port;
      const slot = Number((await redisCli(from, "cluster", "keyslot", key)).trim());
      const lines = (await redisCli(from, "cluster", "nodes")).trim().split("\n");
      for (const line of lines) {
        const f = line.split(" ");
        if (!f[2]?.includes("master") || f[2].includes("fail")) continue;
        for (const range of f.slice(8)) {
          const [lo, hi = lo] = range.split("-").map(Number);
          if (lo !== undefined && hi !== undefined && slot >= lo && slot <= hi) {
            return Number(f[1]!.split("@")[0]!.split(":")[1]);
          }
        }
      }
      throw new Error(`no master for slot ${slot}`);
    },
    async moveSlotOf(key) {
      const from = await tier.masterOf(key);
      const slot = (await redisCli(from, "cluster", "keyslot", key)).trim();
      const lines = (await redisCli(from, "cluster", "nodes")).trim().split("\n");
      const masters = lines
        .map((l) => l.split(" "))
        .filter((f) => f[2]?.includes("master") && !f[2].includes("fail"))
        .map((f) => ({ id: f[0]!, port: Number(f[1]!.split("@")[0]!.split(":")[1]) }));
      const src = masters.find((m) => m.port === from)!;
      const dst = masters.find((m) => m.port !== from)!;
      await redisCli(dst.port, "cluster", "setslot", slot, "importing", src.id);
      await redisCli(from, "cluster", "setslot", slot, "migrating", dst.id);
      for (;;) {
        const keys = (await redisCli(from, "cluster", "getkeysinslot", slot, "100"))
          .trim()
          .split("\n")
          .filter(Boolean);
        if (keys.length === 0) break;
        await redisCli(
          from,
          "migrate",
          "127.0.0.1",
          String(dst.port),
          "",
          "0",
          "5000",
          "keys",
          ...keys,
        );
      }
      for (const m of masters) await redisCli(m.port, "cluster", "setslot", slot, "node", dst.id);
      return { from, to: dst.port };
    },
    async switchover(key) {
      const from = await tier.masterOf(key);
      const lines = (await redisCli(from, "cluster", "nodes")).trim().split("\n");
      const self = lines.map((l) => l.split(" ")).find((f) => f[2]?.includes("myself"))!;
      const replica = lines
        .map((l) => l.split(" "))
        .find((f) => f[3] === self[0] && !f[2]!.includes("fail"));
      if (!replica) throw new Error(`no replica of ${from}`);
      const to = Number(replica[1]!.split("@")[0]!.split(":")[1]);
      await redisCli(to, "cluster", "failover");
      await waitFor("the replica to take over", async () =>
        (await tier.masterOf(key)) === to ? true : undefined,
      );
      return to;
    },
    kill(port) {
      const n = nodes.find((x) => x.port === port);
      if (!n) throw new Error(`no node on ${port}`);
      process.kill(n.pid, "SIGKILL");
    },
    async waitHealthy(timeoutMs = 20_000) {
      await waitFor(
        "the redis cluster to be ok on every live node",
        async () => {
          for (const n of alive()) {
            const info = await redisCli(n.port, "cluster", "info").catch(() => "");
            if (!info.includes("cluster_state:ok")) return undefined;
          }
          return true;
        },
        timeoutMs,
      );
    },
    stop: () => stopAll(nodes, dir),
  };
  await tier.waitHealthy();
  return tier;
}

export interface SentinelTier {
  /** "127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3" */
  sentinels: string;
  master: string;
  /** The port of the current master, as the sentinels see it. */
  masterPort(): Promise<number>;
  /** A planned failover (SENTINEL FAILOVER); resolves with the new master's port. */
  switchover(): Promise<number>;
  kill(port: number): void;
  stop(): Promise<void>;
}

/** One master, one replica, three sentinels (quorum 2); `downAfterMs` is down-after-milliseconds. */
export async function startRedisSentinel(
  opts: { downAfterMs?: number; master?: string } = {},
): Promise<SentinelTier> {
  const master = opts.master ?? "ssmaster";
  const dir = mkdtempSync(join(tmpdir(), "ss-rsentinel-"));
  const nodes: Node[] = [];
  const sentinelPorts: number[] = [];
  try {
    const p0 = await freePort();
    nodes.push(await launch(redisServerArgs(p0, dir), p0, dir));
    const p1 = await freePort();
    nodes.push(
      await launch([...redisServerArgs(p1, dir), "--replicaof", "127.0.0.1", String(p0)], p1, dir),
    );
    await waitFor(
      "the replica to sync",
      async () =>
        (await redisCli(p1, "info", "replication")).includes("master_link_status:up")
          ? true
          : undefined,
      10_000,
    );
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const conf = join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          "bind 127.0.0.1",
          `dir ${dir}`,
          `sentinel monitor ${master} 127.0.0.1 ${p0} 2`,
          `sentinel down-after-milliseconds ${master} ${opts.downAfterMs ?? 1_000}`,
          `sentinel failover-timeout ${master} 10000`,
          `sentinel parallel-syncs ${master} 1`,
          "",
        ].join("\n"),
      );
      nodes.push(await launch([conf, "--sentinel"], port, dir));
      sentinelPorts.push(port);
    }
    // A failover needs the sentinels to know each other and the replica.
    await waitFor(
      "the sentinels to see each other and the replica",
      async () => {
        for (const s of sentinelPorts) {
          const info = (await redisCli(s, "sentinel", "master", master)).split("\n");
          const field = (name: string) => Number(info[info.indexOf(name) + 1]);
          if (field("num-other-sentinels") !== 2 || field("num-slaves") !== 1) return undefined;
        }
        return true;
      },
      20_000,
    );
  } catch (err) {
    await stopAll(nodes, dir);
    throw err;
  }
  const tier: SentinelTier = {
    sentinels: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(","),
    master,
    async masterPort() {
      const out = await redisCli(sentinelPorts[0]!, "sentinel", "get-master-addr-by-name", master);
      return Number(out.trim().split("\n")[1]);
    },
    async switchover() {
      const from = await tier.masterPort();
      await redisCli(sentinelPorts[0]!, "sentinel", "failover", master);
      const to = await waitFor("the sentinels to name a new master", async () => {
        const p = await tier.masterPort();
        return p !== from ? p : undefined;
      });
      // The old master follows the new one before the next failover can use
      // it. Sentinel would reconfigure it on its next look (up to 10 s): do
      // now what it does then (REPLICAOF, then CLIENT KILL of normal and
      // pub/sub clients, so that they reconnect through the sentinels).
      await redisCli(from, "replicaof", "127.0.0.1", String(to));
      await redisCli(from, "client", "kill", "type", "normal");
      await redisCli(from, "client", "kill", "type", "pubsub");
      await waitFor(
        "the old master to replicate from the new one",
        async () =>
          (await redisCli(from, "info", "replication")).includes("master_link_status:up")
            ? true
            : undefined,
        15_000,
      );
      return to;
    },
    kill(port) {
      const n = nodes.find((x) => x.port === port);
      if (!n) throw new Error(`no node on ${port}`);
      process.kill(n.pid, "SIGKILL");
    },
    stop: () => stopAll(nodes, dir),
  };
  return tier;
}
