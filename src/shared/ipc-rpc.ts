import type { Server, Socket } from "node:net";

/**
 * Request/reply over one IPC channel, the same in both directions: a call
 * gets an id, and its reply, under the reply tag of the request, carries the
 * same id. A call never waits forever: no reply in time, or a peer that goes
 * away first, settles it with an RpcError.
 *
 * The transport stays the caller's (src/worker/ipc-channel.ts,
 * src/primary/ipc-hub.ts): a `send` that says whether the message went out,
 * and the replies it receives, handed to `settle`.
 */

/** A request: what it carries, the tag of its reply, and what the reply carries. */
export interface CallSpec {
  request: object;
  reply: string;
  result: unknown;
}
/** Request tags mapped to their specs (src/shared/ipc.ts: WorkerCalls, PrimaryCalls). */
export type CallMap<C> = { [K in keyof C]: CallSpec };

/** Every request of a call map as it travels: `id` 0 asks for no reply. */
export type RequestMessage<C extends CallMap<C>> = {
  [K in keyof C]: { t: K; id: number } & C[K]["request"];
}[keyof C];

/** Every reply of a call map as it travels: the result, or why there is none. */
export type ReplyMessage<C extends CallMap<C>> = {
  [K in keyof C]: { t: C[K]["reply"]; id: number } & (
    | { result: C[K]["result"] }
    | { error: string }
  );
}[keyof C];

/** Why a call failed: no reply in time, the channel closed, or the peer's handler threw. */
export type RpcFailure = "timeout" | "closed" | "remote";

export class RpcError extends Error {
  constructor(
    readonly code: RpcFailure,
    message: string,
  ) {
    super(message);
    this.name = "RpcError";
  }
}

/** What may travel with a request: a socket, a listening server (node:net). */
export type Handle = Socket | Server;

export interface RpcClient<C extends CallMap<C>> {
  /** Sends the request and resolves with its reply's result; rejects with an RpcError. */
  call<K extends keyof C & string>(
    tag: K,
    request: C[K]["request"],
    timeoutMs: number,
    /** Travels with the request (a listening socket: `ss:listen`, `ss:unlisten`). */
    handle?: Handle,
  ): Promise<C[K]["result"]>;
  /** Sends the request without asking for a reply; false when the channel is closed. */
  notify<K extends keyof C & string>(tag: K, request: C[K]["request"]): boolean;
  /** A reply arrived: settles its call. False when none waits for its id (late, or not ours). */
  settle(reply: { id: number; result?: unknown; error?: string }): boolean;
  /** The peer is gone: every pending call rejects now ("closed"), and so does every later one. */
  close(reason: string): void;
  /** Calls waiting for their reply. */
  readonly pending: number;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: RpcError): void;
  timer: NodeJS.Timeout;
}

export function createRpcClient<C extends CallMap<C>>(deps: {
  /** Who answers, for error messages: "the primary", "worker 2". */
  peer: string;
  /** Sends on the channel; false (or a throw) when it is closed. */
  send(msg: RequestMessage<C>, handle?: Handle): boolean;
}): RpcClient<C> {
  let nextId = 1;
  let closed: string | undefined;
  const pending = new Map<number, Pending>();

  const trySend = (msg: RequestMessage<C>, handle?: Handle): boolean => {
    if (closed !== undefined) return false;
    try {
      return deps.send(msg, handle);
    } catch {
      return false;
    }
  };
  const request = (tag: keyof C, id: number, data: object) =>
    ({ ...data, t: tag, id }) as RequestMessage<C>;

  return {
    call(tag, data, timeoutMs, handle) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new RpcError("timeout", `${tag}: no reply from ${deps.peer} in ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, { resolve, reject, timer });
        if (!trySend(request(tag, id, data), handle)) {
          clearTimeout(timer);
          pending.delete(id);
          reject(
            new RpcError("closed", `${tag}: ${closed ?? `the channel to ${deps.peer} is closed`}`),
          );
        }
      });
    },
    notify: (tag, data) => trySend(request(tag, 0, data)),
    settle(reply) {
      const p = pending.get(reply.id);
      if (!p) return false;
      pending.delete(reply.id);
      clearTimeout(p.timer);
      if (typeof reply.error === "string") p.reject(new RpcError("remote", reply.error));
      else p.resolve(reply.result);
      return true;
    },
    close(reason) {
      closed ??= reason;
      const waiting = [...pending.values()];
      pending.clear();
      for (const p of waiting) {
        clearTimeout(p.timer);
        p.reject(new RpcError("closed", reason));
      }
    },
    get pending() {
      return pending.size;
    },
  };
}

/**
 * Answers one request with `handler`'s result, or its error, under `replyTag`;
 * a request with id 0 wants no reply. A handler that answers at once is
 * replied to at once, so its reply keeps its place among the messages sent
 * after it.
 */
export function respond<R>(
  request: { id: number },
  replyTag: string,
  handler: () => R | Promise<R>,
  send: (
    reply: { t: string; id: number; result: R } | { t: string; id: number; error: string },
  ) => void,
): void {
  const { id } = request;
  const ok = (result: R) => {
    if (id !== 0) send({ t: replyTag, id, result });
  };
  const fail = (err: unknown) => {
    if (id !== 0) send({ t: replyTag, id, error: String(err) });
  };
  let out: R | Promise<R>;
  try {
    out = handler();
  } catch (err) {
    fail(err);
    return;
  }
  if (out instanceof Promise) out.then(ok, fail);
  else ok(out);
}

/**
 * Both ends' handling of an incoming message of ours: a reply settles the
 * pending call it answers, a request goes to its one handler and is replied
 * to, a one-way message goes to every handler watching its tag. `Ctx` is
 * what the handlers get beside the message (in the primary: the slot; in a
 * worker: the socket an `ss:conn` carries).
 */
export function createDispatch<Ctx>(opts: {
  /** Tags of replies to this side's own calls. */
  replyTags: ReadonlySet<string>;
  /** The other side's request tags, each with its reply tag. */
  calls: Readonly<Record<string, string>>;
  /** "the primary", "this worker": for the error of a request nobody answers. */
  side: string;
}) {
  type Watcher = (msg: never, ctx: Ctx) => void;
  type Answerer = (msg: never, ctx: Ctx) => unknown;
  const watchers = new Map<string, Set<Watcher>>();
  const answerers = new Map<string, Answerer>();
  return {
    watch(tag: string, watcher: Watcher): () => void {
      const set = watchers.get(tag) ?? new Set<Watcher>();
      watchers.set(tag, set);
      set.add(watcher);
      return () => set.delete(watcher);
    },
    answer(tag: string, answerer: Answerer): () => void {
      if (answerers.has(tag)) throw new Error(`${tag} already has a handler`);
      answerers.set(tag, answerer);
      return () => answerers.delete(tag);
    },
    dispatch(
      msg: { t: string },
      ctx: Ctx,
      settle: (reply: { id: number }) => void,
      reply: (reply: { t: string; id: number }) => void,
    ): void {
      if (opts.replyTags.has(msg.t)) {
        settle(msg as unknown as { id: number });
        return;
      }
      const replyTag = Object.hasOwn(opts.calls, msg.t) ? opts.calls[msg.t] : undefined;
      if (replyTag !== undefined) {
        const answerer = answerers.get(msg.t);
        respond(
          msg as unknown as { id: number },
          replyTag,
          () => {
            if (!answerer) throw new Error(`no handler for ${msg.t} in ${opts.side}`);
            return answerer(msg as never, ctx);
          },
          reply,
        );
      }
      const set = watchers.get(msg.t);
      if (set) for (const w of set) w(msg as never, ctx);
    },
  };
}
