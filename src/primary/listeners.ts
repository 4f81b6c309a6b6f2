import type { Worker } from "node:cluster";
import net from "node:net";
import type { Logger } from "pino";
import type { PortKind } from "../shared/front-door.js";
import { setListenBacklog } from "../shared/node-internals.js";
import type { Balancer } from "./balancer.js";
import type { IpcHub } from "./ipc-hub.js";
import type { Supervisor } from "./supervisor.js";

/**
 * The listening sockets of both ports, and who accepts on each. The public
 * port has one socket per worker in an SO_REUSEPORT group (the kernel
 * spreads new connections across them); the primary creates them (the first
 * binds the port, maybe 0, and so learns its number) and lends one to every
 * ready worker (`ss:listen`, the net.Server as the message's handle). The
 * sockets no worker has are the primary's: it accepts on them and routes
 * like a balancer (hand-off to a worker, 503, its own paths).
 *
 * The API port stays with the primary. Its clients are few and keep their
 * connections alive (the backend's pool, Prometheus), so handing each one to
 * a worker once costs nothing that shows; in exchange a worker that stops
 * answering holds no queue of API connections while it is being noticed
 * (the kernel would give its socket its share until the process is gone),
 * and health, readiness and /metrics answer from the primary whatever the
 * workers do.
 *
 * Sockets travel instead of closing. Closing a socket of an SO_REUSEPORT
 * group resets the connections queued on it, but a descriptor's close
 * destroys the socket only when it is the last one, and sending a net.Server
 * leaves the sender's copy open (Node's child_process handle conversion
 * closes only a sent net.Socket). So a worker lent a socket has it before the
 * primary closes its copy, and a stopping worker gives its sockets back
 * (`ss:unlisten`) and closes its copy only once the primary accepts on them.
 * A worker that crashes or is killed takes its sockets, and the connections
 * queued on them, with it: the primary creates fresh ones, so that the
 * group always has a socket for every worker, and at least one while the
 * host runs (a refused connection reads as a dead host; a 503 does not).
 */

export interface Listeners {
  /** Binds both ports, lends the ready workers their sockets; resolves with the port numbers. */
  start(): Promise<{ publicPort: number; apiPort: number }>;
  /** The host drains: no worker is lent a socket any more (stopping ones give theirs back). */
  drain(): void;
  /** The host stops: closes the sockets the primary holds. */
  close(): void;
  /** Workers accepting connections on their own sockets now. */
  readonly workersListening: number;
}

const PORTS: readonly PortKind[] = ["public", "api"];
/** The ports whose sockets workers accept on themselves. */
const LENT: readonly PortKind[] = ["public"];
/** Node listens again on a received socket with its default backlog (511); put back ours. */
const BACKLOG = 4096;

export function createListeners(deps: {
  sup: Supervisor;
  ipc: IpcHub;
  balancer: Balancer;
  log: Logger;
  ports: { public: number; api: number };
  hosts: { public: string; api: string };
  /** How long a worker may take to accept on a socket before the primary keeps it. */
  listenTimeoutMs: number;
}): Listeners {
  const { sup, ipc, balancer, log } = deps;
  const bound: Record<PortKind, number> = { public: deps.ports.public, api: deps.ports.api };
  const hosts: Record<PortKind, string> = deps.hosts;
  let started = false;
  let draining = false;
  let closed = false;
  /** Sockets the primary accepts on. */
  const held: Record<PortKind, net.Server[]> = { public: [], api: [] };
  /** Sockets sent to a worker, not yet acknowledged (the primary's copy still accepts). */
  const sending: Record<PortKind, number> = { public: 0, api: 0 };
  /** The ports each worker accepts on. */
  const lent = new Map<Worker, Set<PortKind>>();

  const hold = (port: PortKind, server: net.Server) => {
    balancer.attach(port, server);
    server.on("error", (err) => log.error({ err, port }, "listening socket error"));
    held[port].push(server);
  };

  const bind = (port: PortKind): Promise<void> => {
    const server = net.createServer({ noDelay: true });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(
        { port: bound[port], host: hosts[port], backlog: BACKLOG, reusePort: true },
        () => {
          server.off("error", reject);
          const addr = server.address();
          if (typeof addr === "object" && addr) bound[port] = addr.port;
          hold(port, server);
          resolve();
        },
      );
    });
  };

  const lentCount = (port: PortKind) => {
    let n = 0;
    for (const ports of lent.values()) if (ports.has(port)) n++;
    return n;
  };

  /** Creates the sockets that died with their worker: one per worker, at least one while draining. */
  let replenishing: Promise<void> = Promise.resolve();
  const replenish = (): Promise<void> => {
    replenishing = replenishing
      .then(async () => {
        if (!started || closed) return;
        for (const port of PORTS) {
          const want = draining || !LENT.includes(port) ? 1 : sup.slots.length;
          let created = 0;
          while (held[port].length + sending[port] + lentCount(port) < want) {
            await bind(port);
            created++;
          }
          if (created > 0) log.info({ port, created }, "listening sockets created");
        }
      })
      .catch((err: unknown) => log.error({ err }, "could not create a listening socket"));
    return replenishing;
  };

  const lendTo = async (slot: number): Promise<void> => {
    const worker = sup.slots[slot]?.worker;
    if (!started || draining || !worker || lent.has(worker)) return;
    const ports = new Set<PortKind>();
    lent.set(worker, ports);
    for (const port of LENT) {
      if (held[port].length === 0) await bind(port);
      const server = held[port].shift();
      if (!server) continue;
      sending[port]++;
      try {
        await ipc.call(slot, "ss:listen", { port }, deps.listenTimeoutMs, server);
        ports.add(port);
        // The worker accepts on it: the primary's copy closes, the socket stays.
        server.close();
      } catch (err) {
        // The primary's copy never stopped accepting: it keeps the socket.
        held[port].push(server);
        if (sup.slots[slot]?.worker === worker && !draining) {
          log.error({ err, worker: slot, port }, "worker could not accept on a listening socket");
        }
      } finally {
        sending[port]--;
      }
    }
    if (sup.slots[slot]?.worker !== worker) {
      lent.delete(worker);
      void replenish();
    } else {
      log.debug({ worker: slot, ports: [...ports] }, "worker accepts connections");
    }
  };

  // A stopping worker's sockets: accepted on here before it closes its copy.
  ipc.answer("ss:unlisten", (slot, { port }, handle) => {
    if (!(handle instanceof net.Server)) throw new Error("ss:unlisten without its socket");
    const worker = sup.slots[slot]?.worker;
    if (worker) lent.get(worker)?.delete(port);
    if (closed) {
      handle.close();
      return null;
    }
    setListenBacklog(handle, BACKLOG);
    hold(port, handle);
    log.debug({ worker: slot, port }, "listening socket given back");
    return null;
  });

  sup.on("ready", (slot) => void lendTo(slot));
  sup.on("exit", (_slot, _code, _signal, worker) => {
    // A crashed or killed worker's sockets are gone (a stopping one gave them back).
    if (lent.delete(worker)) void replenish();
  });

  return {
    async start() {
      // The first socket of each port binds it (and learns its number if 0).
      for (const port of PORTS) await bind(port);
      started = true;
      await replenish();
      await Promise.all(sup.readySlots().map(lendTo));
      return { publicPort: bound.public, apiPort: bound.api };
    },
    drain() {
      draining = true;
    },
    close() {
      closed = true;
      for (const port of PORTS) for (const s of held[port].splice(0)) s.close();
    },
    get workersListening() {
      let n = 0;
      for (const ports of lent.values()) if (ports.size > 0) n++;
      return n;
    },
  };
}
