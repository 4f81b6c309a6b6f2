import net from "node:net";
import {
  isPrimaryToWorker,
  PRIMARY_CALLS,
  type PrimaryCalls,
  type PrimaryMessage,
  WORKER_CALLS,
  type WorkerCalls,
  type WorkerMessage,
  type WorkerToPrimary,
} from "../shared/ipc.js";
import { createDispatch, createRpcClient, type Handle } from "../shared/ipc-rpc.js";

/**
 * The worker's end of the IPC channel to its primary: the one
 * `process.on("message")` of a worker. Modules register typed handlers here
 * instead of listening themselves; replies to this worker's requests go to
 * the request/reply helper (src/shared/ipc-rpc.ts); messages that are not
 * ours (the cluster adapter's) are left alone.
 */

type MessageOf<T extends PrimaryMessage["t"]> = Extract<PrimaryMessage, { t: T }>;
type Answer<K extends keyof PrimaryCalls> = (
  request: PrimaryCalls[K]["request"],
  /** The listening socket an `ss:listen` carries. */
  handle: Handle | undefined,
) => PrimaryCalls[K]["result"] | Promise<PrimaryCalls[K]["result"]>;

export interface WorkerChannel {
  /** One-way messages of this tag; an `ss:conn` comes with its socket as `handle`. */
  on<T extends PrimaryMessage["t"]>(
    tag: T,
    handler: (msg: MessageOf<T>, handle: Handle | undefined) => void,
  ): () => void;
  /** Answers the primary's requests of this tag (one handler per tag). */
  answer<K extends keyof PrimaryCalls>(tag: K, handler: Answer<K>): () => void;
  /**
   * A one-way message to the primary; false when the channel is closed. A
   * socket given as `handle` travels with it (`ss:relay`); it is destroyed
   * if the send fails later, and closed here once the primary has it.
   * `written`: once the message is on the channel (a handle waits in Node's
   * queue until the previous one is acknowledged; one still there when the
   * process exits is lost, and its connection reset).
   */
  send(msg: WorkerMessage, handle?: net.Socket, written?: () => void): boolean;
  /**
   * A request to the primary; rejects with an RpcError on timeout or when
   * the channel closes. A listening socket given as `handle` travels with it
   * and stays open here (Node closes only a sent net.Socket).
   */
  call<K extends keyof WorkerCalls>(
    tag: K,
    request: WorkerCalls[K]["request"],
    timeoutMs: number,
    handle?: net.Server,
  ): Promise<WorkerCalls[K]["result"]>;
  /** A request whose reply this worker does not wait for. */
  notify<K extends keyof WorkerCalls>(tag: K, request: WorkerCalls[K]["request"]): boolean;
  close(): void;
}

/** What the channel needs of `process` (a worker's; tests pass an EventEmitter). */
export interface ChannelPort {
  readonly connected: boolean;
  send?(msg: unknown, handle?: Handle, options?: object, cb?: (err: Error | null) => void): boolean;
  on(event: "message", listener: (msg: unknown, handle?: Handle) => void): unknown;
  on(event: "disconnect", listener: () => void): unknown;
  off(event: "message", listener: (msg: unknown, handle?: Handle) => void): unknown;
  off(event: "disconnect", listener: () => void): unknown;
}

const REPLY_TAGS: ReadonlySet<string> = new Set(Object.values(WORKER_CALLS));

export function createWorkerChannel(port: ChannelPort = process): WorkerChannel {
  const dispatcher = createDispatch<Handle | undefined>({
    replyTags: REPLY_TAGS,
    calls: PRIMARY_CALLS,
    side: "this worker",
  });

  const post = (msg: WorkerToPrimary, handle?: Handle, written?: () => void): boolean => {
    if (!port.connected || !port.send) return false;
    if (handle) {
      port.send(msg, handle, {}, (err) => {
        // A listening socket stays with its owner, who closes it.
        if (err && handle instanceof net.Socket) handle.destroy();
        written?.();
      });
    } else {
      port.send(msg);
    }
    return true;
  };
  const rpc = createRpcClient<WorkerCalls>({ peer: "the primary", send: post });

  const onMessage = (msg: unknown, handle?: Handle) => {
    if (!isPrimaryToWorker(msg)) return;
    dispatcher.dispatch(
      msg,
      handle,
      (reply) => rpc.settle(reply),
      (reply) => post(reply as WorkerToPrimary),
    );
  };
  const onDisconnect = () => rpc.close("the channel to the primary closed");
  port.on("message", onMessage);
  port.on("disconnect", onDisconnect);

  return {
    on: (tag, handler) => dispatcher.watch(tag, handler),
    answer: (tag, handler) =>
      dispatcher.answer(tag, (msg: PrimaryCalls[typeof tag]["request"], handle) =>
        handler(msg, handle),
      ),
    send: (msg, handle, written) => post(msg, handle, written),
    call: (tag, request, timeoutMs, handle) => rpc.call(tag, request, timeoutMs, handle),
    notify: (tag, request) => rpc.notify(tag, request),
    close() {
      port.off("message", onMessage);
      port.off("disconnect", onDisconnect);
      rpc.close("the worker's channel was closed");
    },
  };
}
