import type { Worker } from "node:cluster";
import {
  PRIMARY_CALLS,
  type PrimaryCalls,
  type PrimaryMessage,
  type PrimaryToWorker,
  WORKER_CALLS,
  type WorkerCalls,
  type WorkerMessage,
  type WorkerToPrimary,
} from "../shared/ipc.js";
import {
  createRpcClient,
  type RequestMessage,
  type RpcClient,
  RpcError,
  respond,
} from "../shared/ipc-rpc.js";
import type { Supervisor } from "./supervisor.js";

/**
 * The primary's end of the IPC channels to its workers: the one listener on
 * the supervisor's messages. Modules register typed handlers here; requests
 * from workers are answered through the request/reply helper
 * (src/shared/ipc-rpc.ts), and so are the primary's requests to one worker,
 * which settle at once when that worker exits.
 */

/** What a module may watch: one-way messages, and requests (answered elsewhere). */
type Watched = WorkerMessage | RequestMessage<WorkerCalls>;
type MessageOf<T extends Watched["t"]> = Extract<Watched, { t: T }>;
type Answer<K extends keyof WorkerCalls> = (
  slot: number,
  request: WorkerCalls[K]["request"],
) => WorkerCalls[K]["result"] | Promise<WorkerCalls[K]["result"]>;

export interface IpcHub {
  /** Messages of this tag from any worker (several handlers may watch one tag). */
  on<T extends Watched["t"]>(
    tag: T,
    handler: (slot: number, msg: MessageOf<T>) => void,
  ): () => void;
  /** Answers the workers' requests of this tag (one handler per tag). */
  answer<K extends keyof WorkerCalls>(tag: K, handler: Answer<K>): () => void;
  /** A request to the worker in `slot`; rejects with an RpcError on timeout or when it exits. */
  call<K extends keyof PrimaryCalls>(
    slot: number,
    tag: K,
    request: PrimaryCalls[K]["request"],
    timeoutMs: number,
  ): Promise<PrimaryCalls[K]["result"]>;
  /** A one-way message to the worker in `slot`; false when it is not connected. */
  send(slot: number, msg: PrimaryMessage): boolean;
  broadcast(msg: PrimaryMessage): void;
}

type Handler = (slot: number, msg: Watched) => void;
const REPLY_TAGS: ReadonlySet<string> = new Set(Object.values(PRIMARY_CALLS));

export function createIpcHub(sup: Supervisor): IpcHub {
  const handlers = new Map<string, Set<Handler>>();
  const answers = new Map<string, (slot: number, request: object) => unknown>();
  // One per worker process (not per slot): a replacement starts with no calls of its own.
  const clients = new Map<Worker, RpcClient<PrimaryCalls>>();

  const clientOf = (slot: number): RpcClient<PrimaryCalls> | undefined => {
    const worker = sup.slots[slot]?.worker;
    if (!worker) return undefined;
    let client = clients.get(worker);
    if (!client) {
      client = createRpcClient<PrimaryCalls>({
        peer: `worker ${slot}`,
        send: (msg) => sup.slots[slot]?.worker === worker && sup.send(slot, msg),
      });
      clients.set(worker, client);
    }
    return client;
  };

  sup.on("message", (slot, msg: WorkerToPrimary, worker) => {
    if (REPLY_TAGS.has(msg.t)) {
      clients.get(worker)?.settle(msg as { id: number });
      return;
    }
    if (Object.hasOwn(WORKER_CALLS, msg.t)) {
      const tag = msg.t as keyof WorkerCalls;
      const answer = answers.get(tag);
      respond(
        msg as { id: number },
        WORKER_CALLS[tag],
        () => {
          if (!answer) throw new Error(`no handler for ${tag} in the primary`);
          return answer(slot, msg);
        },
        // To the worker that asked: not to a replacement in its slot.
        (reply) => {
          if (sup.slots[slot]?.worker === worker) sup.send(slot, reply as PrimaryToWorker);
        },
      );
    }
    const set = handlers.get(msg.t);
    if (set) for (const h of set) h(slot, msg as Watched);
  });
  sup.on("exit", (slot, _code, _signal, worker) => {
    clients.get(worker)?.close(`worker ${slot} exited`);
    clients.delete(worker);
  });

  return {
    on(tag, handler) {
      const set = handlers.get(tag) ?? new Set<Handler>();
      handlers.set(tag, set);
      const h = handler as Handler;
      set.add(h);
      return () => set.delete(h);
    },
    answer(tag, handler) {
      if (answers.has(tag)) throw new Error(`${tag} already has a handler`);
      answers.set(tag, handler as (slot: number, request: object) => unknown);
      return () => answers.delete(tag);
    },
    call(slot, tag, request, timeoutMs) {
      const client = clientOf(slot);
      if (!client)
        return Promise.reject(new RpcError("closed", `${tag}: no worker in slot ${slot}`));
      return client.call(tag, request, timeoutMs);
    },
    send: (slot, msg) => sup.send(slot, msg),
    broadcast: (msg) => sup.broadcast(msg),
  };
}
