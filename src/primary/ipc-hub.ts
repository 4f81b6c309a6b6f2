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
  createDispatch,
  createRpcClient,
  type Handle,
  type RequestMessage,
  type RpcClient,
  RpcError,
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
  /** The listening socket an `ss:unlisten` carries. */
  handle: Handle | undefined,
) => WorkerCalls[K]["result"] | Promise<WorkerCalls[K]["result"]>;

export interface IpcHub {
  /** Messages of this tag from any worker (several handlers may watch one tag). */
  on<T extends Watched["t"]>(
    tag: T,
    /** `handle`: the socket an `ss:relay` carries. */
    handler: (slot: number, msg: MessageOf<T>, handle: Handle | undefined) => void,
  ): () => void;
  /** Answers the workers' requests of this tag (one handler per tag). */
  answer<K extends keyof WorkerCalls>(tag: K, handler: Answer<K>): () => void;
  /**
   * A request to the worker in `slot`; rejects with an RpcError on timeout
   * or when it exits. A listening socket given as `handle` travels with it
   * and stays open here.
   */
  call<K extends keyof PrimaryCalls>(
    slot: number,
    tag: K,
    request: PrimaryCalls[K]["request"],
    timeoutMs: number,
    handle?: Handle,
  ): Promise<PrimaryCalls[K]["result"]>;
  /** A one-way message to the worker in `slot`; false when it is not connected. */
  send(slot: number, msg: PrimaryMessage): boolean;
  broadcast(msg: PrimaryMessage): void;
}

const REPLY_TAGS: ReadonlySet<string> = new Set(Object.values(PRIMARY_CALLS));

export function createIpcHub(sup: Supervisor): IpcHub {
  const dispatcher = createDispatch<{ slot: number; handle: Handle | undefined }>({
    replyTags: REPLY_TAGS,
    calls: WORKER_CALLS,
    side: "the primary",
  });
  // One per worker process (not per slot): a replacement starts with no calls of its own.
  const clients = new Map<Worker, RpcClient<PrimaryCalls>>();

  const clientOf = (slot: number): RpcClient<PrimaryCalls> | undefined => {
    const worker = sup.slots[slot]?.worker;
    if (!worker) return undefined;
    let client = clients.get(worker);
    if (!client) {
      client = createRpcClient<PrimaryCalls>({
        peer: `worker ${slot}`,
        send: (msg, handle) => sup.slots[slot]?.worker === worker && sup.send(slot, msg, handle),
      });
      clients.set(worker, client);
    }
    return client;
  };

  sup.on("message", (slot, msg: WorkerToPrimary, worker, handle) => {
    dispatcher.dispatch(
      msg,
      { slot, handle },
      (reply) => clients.get(worker)?.settle(reply),
      // To the worker that asked: not to a replacement in its slot.
      (reply) => {
        if (sup.slots[slot]?.worker === worker) sup.send(slot, reply as PrimaryToWorker);
      },
    );
  });
  sup.on("exit", (slot, _code, _signal, worker) => {
    clients.get(worker)?.close(`worker ${slot} exited`);
    clients.delete(worker);
  });

  return {
    on: (tag, handler) =>
      dispatcher.watch(tag, (msg: MessageOf<typeof tag>, ctx) =>
        handler(ctx.slot, msg, ctx.handle),
      ),
    answer: (tag, handler) =>
      dispatcher.answer(tag, (msg: WorkerCalls[typeof tag]["request"], ctx) =>
        handler(ctx.slot, msg, ctx.handle),
      ),
    call(slot, tag, request, timeoutMs, handle) {
      const client = clientOf(slot);
      if (!client)
        return Promise.reject(new RpcError("closed", `${tag}: no worker in slot ${slot}`));
      return client.call(tag, request, timeoutMs, handle);
    },
    send: (slot, msg) => sup.send(slot, msg),
    broadcast: (msg) => sup.broadcast(msg),
  };
}
