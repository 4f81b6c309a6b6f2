import type { Worker } from "node:cluster";
import type { Logger } from "pino";
import type { Balancer } from "./balancer.js";
import type { IpcHub } from "./ipc-hub.js";
import type { Supervisor } from "./supervisor.js";

/**
 * Who accepts connections on the two ports. The primary binds them first
 * (SO_REUSEPORT; PORT/API_PORT may be 0, so only it learns the numbers),
 * once every worker is ready; then each ready worker is told to listen on
 * the same ports (`ss:listen`), and the kernel spreads new connections
 * across the workers' sockets. The primary's own listener is open only while
 * no worker listens — at start, in a crash loop, and while the host drains —
 * so that /ready still answers (503) and other requests get 503 with
 * Retry-After rather than a refused connection. A worker stops listening
 * before it stops (rolling restart, shutdown); a hung one is killed, which
 * closes its sockets.
 *
 * The kernel resets connections waiting in a listening socket's queue when
 * it closes; the hand-overs here open the next listener before closing one
 * where they can.
 */

export interface Listeners {
  /** Binds both ports, lets the ready workers listen; resolves with the port numbers. */
  start(): Promise<{ publicPort: number; apiPort: number }>;
  /** The host drains: the primary listens again (to answer 503s) before the workers stop. */
  drain(): Promise<void>;
  /** Workers accepting connections now. */
  readonly workersListening: number;
}

export function createListeners(deps: {
  sup: Supervisor;
  ipc: IpcHub;
  balancer: Balancer;
  log: Logger;
  ports: { public: number; api: number };
  hosts: { public: string; api: string };
  /** How long a worker may take to listen before it is left out. */
  listenTimeoutMs: number;
}): Listeners {
  const { sup, ipc, balancer, log } = deps;
  let ports: { publicPort: number; apiPort: number } | undefined;
  let draining = false;
  let primaryListening = false;
  const listening = new Map<number, Worker>();
  let chain: Promise<void> = Promise.resolve();

  /** Makes the primary's listener match the state, one change at a time. */
  const update = (): Promise<void> => {
    chain = chain
      .then(async () => {
        if (!ports) return;
        const want = draining || listening.size === 0;
        if (want && !primaryListening) {
          primaryListening = true;
          await balancer.listen("public", ports.publicPort, deps.hosts.public);
          await balancer.listen("api", ports.apiPort, deps.hosts.api);
          log.info({ draining, workersListening: listening.size }, "primary accepting connections");
        } else if (!want && primaryListening) {
          primaryListening = false;
          await balancer.close();
          log.debug({ workersListening: listening.size }, "workers accept the connections");
        }
      })
      .catch((err: unknown) => log.error({ err }, "could not change the primary's listeners"));
    return chain;
  };

  const askToListen = async (slot: number): Promise<void> => {
    const worker = sup.slots[slot]?.worker;
    if (!ports || draining || !worker) return;
    try {
      await ipc.call(slot, "ss:listen", ports, deps.listenTimeoutMs);
    } catch (err) {
      if (sup.slots[slot]?.worker === worker && !draining) {
        log.error(
          { err, worker: slot },
          "worker could not listen; it gets only handed-over connections",
        );
      }
      return;
    }
    if (sup.slots[slot]?.worker !== worker || draining) return;
    listening.set(slot, worker);
    await update();
  };

  const forget = (slot: number) => {
    if (listening.delete(slot)) void update();
  };
  sup.on("ready", (slot) => void askToListen(slot));
  sup.on("retiring", forget);
  sup.on("exit", forget);

  return {
    async start() {
      const publicPort = await balancer.listen("public", deps.ports.public, deps.hosts.public);
      const apiPort = await balancer.listen("api", deps.ports.api, deps.hosts.api);
      primaryListening = true;
      ports = { publicPort, apiPort };
      await Promise.all(sup.readySlots().map(askToListen));
      await update();
      return ports;
    },
    async drain() {
      draining = true;
      await update();
    },
    get workersListening() {
      return listening.size;
    },
  };
}
