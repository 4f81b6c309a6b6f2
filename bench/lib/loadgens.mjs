import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { openFleet } from "./fleet.mjs";
import { rssKb } from "./proc.mjs";

/**
 * Idle clients held by several load-generator processes. One process opens
 * at most its open-files limit of sockets (20,000, hard, on the bench
 * machine: EMFILE at ~19.9k), so 20k clients take two. Each child process
 * runs openFleet on its share of the tokens (over the loopback source
 * addresses, as one process does), holds the clients and reports the counts
 * back over IPC; the parent measures the target meanwhile. `terminate()`
 * kills the children: the kernel closes their sockets.
 */
export const CLIENTS_PER_PROCESS = 15_000;

const SELF = fileURLToPath(import.meta.url);

/** Starts `count` child processes; resolves once each listens for work. */
export async function startLoadgens(count) {
  const children = [];
  for (let i = 0; i < count; i++) {
    const child = fork(SELF, [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    children.push(child);
    await reply(child);
  }
  return {
    count,
    /**
     * Opens tokens[i] as user `u${firstUser + i}`: contiguous shares, one per
     * child, `concurrency` handshakes in flight over all of them. Resolves
     * with openFleet's counts summed (no clients: the children hold them).
     */
    async open(target, tokens, { concurrency, retries, firstUser }) {
      const share = Math.ceil(tokens.length / count);
      const parts = await Promise.all(
        children.map((child, i) => {
          child.send({
            publicUrl: target.publicUrl,
            tokens: tokens.slice(i * share, (i + 1) * share),
            firstUser: firstUser + i * share,
            concurrency: Math.max(1, Math.ceil(concurrency / count)),
            retries,
          });
          return reply(child);
        }),
      );
      const failures = {};
      for (const p of parts) {
        for (const [k, n] of Object.entries(p.failures)) failures[k] = (failures[k] ?? 0) + n;
      }
      const sum = (key) => parts.reduce((n, p) => n + p[key], 0);
      return {
        attempted: sum("attempted"),
        completed: sum("completed"),
        failed: sum("failed"),
        retried: sum("retried"),
        failures,
        failureSamples: parts.flatMap((p) => p.failureSamples).slice(0, 5),
      };
    },
    /** Resident memory of the children (KB). */
    rssKb: () => children.reduce((n, c) => n + rssKb(c.pid), 0),
    terminate() {
      for (const c of children) c.kill("SIGKILL");
    },
  };
}

/** The child's next message, or an error if it exits first. */
function reply(child) {
  return new Promise((resolve, reject) => {
    const onExit = (code, sig) => {
      child.off("message", onMessage);
      reject(new Error(`load generator ${child.pid} exited (${code ?? sig})`));
    };
    const onMessage = (m) => {
      child.off("exit", onExit);
      resolve(m);
    };
    child.once("message", onMessage);
    child.once("exit", onExit);
  });
}

// The child: opens what it is sent, holds it, and reports the counts.
if (process.argv[1] === SELF && process.send) {
  const held = [];
  process.on("message", async (m) => {
    const { clients, ...counts } = await openFleet({ publicUrl: m.publicUrl }, m.tokens, {
      concurrency: m.concurrency,
      userOf: (i) => `u${m.firstUser + i}`,
      retries: m.retries,
    });
    held.push(...clients);
    process.send(counts);
  });
  process.on("disconnect", () => process.exit());
  process.send({ ready: true });
}
