import type { Socket } from "socket.io-client";
import { type AckLike, errorOf, isAck } from "./acks.js";
import { type BackoffOptions, retryDelay } from "./backoff.js";
import { BoundedQueue, type OverflowPolicy } from "./bounded-queue.js";
import {
  CLIENT_SIDE_CODES,
  ClientError,
  type ClientErrorCode,
  RETRYABLE_CODES,
} from "./client-error.js";
import type { RequestOptions } from "./client-types.js";

/**
 * Requests with acks: each one settles within its `timeoutMs` (queueing and
 * retries included), is retried after a retryable refusal, and waits in the
 * bounded offline queue while the client is not registered.
 */

interface Job {
  event: string;
  payload: unknown;
  deadline: number;
  timeoutMs: number;
  attempts: number;
  retry: boolean;
  queue: boolean;
  done: boolean;
  timer?: ReturnType<typeof setTimeout>;
  retryTimer?: ReturnType<typeof setTimeout>;
  unwrap: (ack: AckLike) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: ClientError) => void;
}

export interface RequestQueueDeps {
  socket: Socket;
  /** Registered and connected: requests go out at once. */
  canSend: () => boolean;
  /** The code every request rejects with at once (the client is closed or failed), if any. */
  stopCode: () => ClientErrorCode | undefined;
  /** Acks that carry the socket's rooms (register, room:join, room:leave). */
  onRooms: (rooms: string[]) => void;
  timeoutMs: number;
  /** Sends in all, first included. */
  maxAttempts: number;
  retry: BackoffOptions;
  max: number;
  overflow?: OverflowPolicy | undefined;
}

export interface RequestQueue {
  /** Sends `event`; resolves with `unwrap(ack)` or rejects with a ClientError. */
  send(
    event: string,
    payload: unknown,
    opts: RequestOptions,
    unwrap: (ack: AckLike) => unknown,
  ): Promise<unknown>;
  /** Sends what waited, in order (after a registration). */
  flush(): void;
  /** Rejects what waits in the queue. */
  rejectAll(code: ClientErrorCode, message?: string): void;
  /** Requests waiting in the offline queue. */
  readonly size: number;
}

export function createRequestQueue(deps: RequestQueueDeps): RequestQueue {
  const { socket } = deps;
  const queue = new BoundedQueue<Job>(deps.max, deps.overflow);

  function settle(job: Job, err: ClientError | undefined, value?: unknown): void {
    if (job.done) return;
    job.done = true;
    clearTimeout(job.timer);
    clearTimeout(job.retryTimer);
    queue.remove(job);
    if (err) job.reject(err);
    else job.resolve(value);
  }

  function clientError(job: Job, code: ClientErrorCode, message?: string): ClientError {
    const text =
      message ??
      (code in CLIENT_SIDE_CODES
        ? CLIENT_SIDE_CODES[code as keyof typeof CLIENT_SIDE_CODES]
        : code);
    return new ClientError(code, text, { attempts: job.attempts, event: job.event });
  }

  function dispatch(job: Job): void {
    if (job.done) return;
    const stopCode = deps.stopCode();
    if (stopCode) {
      settle(job, clientError(job, stopCode));
      return;
    }
    if (!deps.canSend()) {
      if (!job.queue) {
        settle(job, clientError(job, "DISCONNECTED", "not connected"));
        return;
      }
      const { accepted, dropped } = queue.push(job);
      if (dropped)
        settle(dropped, clientError(dropped, "QUEUE_FULL", "dropped for a newer request"));
      if (!accepted) settle(job, clientError(job, "QUEUE_FULL"));
      return;
    }
    job.attempts += 1;
    const remaining = Math.max(1, job.deadline - Date.now());
    // With a timeout, socket.io-client also calls back when the connection drops.
    socket.timeout(remaining).emit(job.event, job.payload, (err: Error | null, ack: unknown) => {
      if (job.done) return;
      if (err) {
        // close() (or giving up) disconnects the socket, which fails the acks it
        // waits for: those requests end the way the client did, not DISCONNECTED.
        const stopped = deps.stopCode();
        if (stopped) return settle(job, clientError(job, stopped));
        const dropped = !socket.connected || err.message.includes("disconnected");
        return settle(job, clientError(job, dropped ? "DISCONNECTED" : "TIMEOUT"));
      }
      onAck(job, ack);
    });
  }

  function onAck(job: Job, ack: unknown): void {
    if (isAck(ack) && ack.ok) {
      const ok = ack as AckLike;
      if (Array.isArray(ok["rooms"])) deps.onRooms(ok["rooms"] as string[]);
      settle(job, undefined, job.unwrap(ok));
      return;
    }
    const e = errorOf(ack);
    if (job.retry && RETRYABLE_CODES.has(e.code) && job.attempts < deps.maxAttempts) {
      const delay = retryDelay(job.attempts - 1, e.retryAfter, deps.retry);
      if (Date.now() + delay < job.deadline) {
        job.retryTimer = setTimeout(() => dispatch(job), delay);
        return;
      }
    }
    settle(
      job,
      new ClientError(e.code, e.message, {
        retryAfter: e.retryAfter,
        details: isAck(ack) && !ack.ok ? ack.error.details : undefined,
        attempts: job.attempts,
        event: job.event,
      }),
    );
  }

  return {
    send(event, payload, opts, unwrap) {
      return new Promise((resolve, reject) => {
        const timeoutMs = opts.timeoutMs ?? deps.timeoutMs;
        const job: Job = {
          event,
          payload,
          deadline: Date.now() + timeoutMs,
          timeoutMs,
          attempts: 0,
          retry: opts.retry ?? true,
          queue: opts.queue ?? true,
          done: false,
          unwrap,
          resolve,
          reject,
        };
        job.timer = setTimeout(
          () =>
            settle(job, clientError(job, "TIMEOUT", `no answer to "${event}" in ${timeoutMs} ms`)),
          timeoutMs,
        );
        dispatch(job);
      });
    },
    flush() {
      for (const job of queue.drain()) dispatch(job);
    },
    rejectAll(code, message) {
      for (const job of queue.drain()) settle(job, clientError(job, code, message));
    },
    get size() {
      return queue.size;
    },
  };
}
