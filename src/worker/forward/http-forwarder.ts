import { createRequire } from "node:module";
import {
  BrokenCircuitError,
  BulkheadRejectedError,
  bulkhead,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  fullJitterGenerator,
  handleType,
  IsolatedCircuitError,
  retry,
  TaskCancelledError,
  TimeoutStrategy,
  timeout,
} from "cockatiel";
import type { Logger } from "pino";
import type { Pool as UndiciPool } from "undici";
import type { Config } from "../../shared/config.js";
import { ackError } from "../../shared/errors.js";
import { metrics } from "../../shared/metrics.js";
import type { ForwardedEvent, ForwardReply } from "./backend-contract.js";
import { createForwardBudget } from "./forward-budget.js";
import type { BreakerState, ForwardKind, ForwardService } from "./forward-service.js";
import { createForwardTracker, forwardJob } from "./forward-service.js";
import { serializeEvent } from "./serialize-event.js";
import { SIGNATURE_HEADER, signatureHeader } from "./signature.js";

/**
 * Forwards client events to `POST {BACKEND_URL}{BACKEND_EVENTS_PATH}` over a
 * keep-alive undici pool, behind cockatiel policies, outermost first:
 *
 *   deadline (BACKEND_DEADLINE_MS, counts queueing too)
 *   → bulkhead (BACKEND_MAX_CONCURRENCY running, BACKEND_MAX_QUEUE waiting; full → OVERLOADED)
 *   → retry (BACKEND_MAX_ATTEMPTS, exponential backoff with full jitter)
 *   → circuit breaker (BACKEND_BREAKER_THRESHOLD consecutive failed attempts)
 *   → one attempt (BACKEND_ATTEMPT_TIMEOUT_MS)
 *
 * The breaker sits inside the retry so that it counts attempts, not events:
 * a dead backend opens it after THRESHOLD attempts (a few events), a couple
 * of 503s followed by a success reset the count. Only 5xx, timeouts and
 * connection errors are failures; a 4xx means the backend is alive and is
 * answered at once (BACKEND_REJECTED), without a retry.
 */

/** An attempt that failed in a way worth retrying; also what the breaker counts. */
export class AttemptFailure extends Error {
  constructor(
    readonly kind: "status" | "timeout" | "connection",
    message: string,
  ) {
    super(message);
  }
}

export interface HttpForwarderDeps {
  cfg: Config;
  log: Logger;
  /** BACKEND_URL, already validated. */
  backendUrl: string;
}

const BREAKER_METRIC: Record<BreakerState, number> = { closed: 0, "half-open": 1, open: 2 };

export function createHttpForwarder(deps: HttpForwarderDeps): ForwardService {
  const { cfg } = deps;
  const log = deps.log.child({ module: "forward" });
  const url = new URL(deps.backendUrl);
  // BACKEND_URL may carry a path prefix (https://api.internal/hooks).
  const path = `${url.pathname.replace(/\/+$/, "")}${cfg.BACKEND_EVENTS_PATH}`;
  // undici is loaded only where events go to an HTTP backend (about 145 ms
  // of CPU at a worker's start otherwise).
  const { Pool } = createRequire(import.meta.url)("undici") as { Pool: typeof UndiciPool };
  const pool = new Pool(url.origin, {
    connections: cfg.BACKEND_MAX_CONCURRENCY,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    connect: { timeout: cfg.BACKEND_ATTEMPT_TIMEOUT_MS },
  });
  const tracker = createForwardTracker(createForwardBudget(cfg));

  const breaker = circuitBreaker(handleType(AttemptFailure), {
    halfOpenAfter: cfg.BACKEND_BREAKER_HALF_OPEN_MS,
    breaker: new ConsecutiveBreaker(cfg.BACKEND_BREAKER_THRESHOLD),
  });
  const retryPolicy = retry(handleType(AttemptFailure), {
    maxAttempts: cfg.BACKEND_MAX_ATTEMPTS - 1,
    backoff: new ExponentialBackoff({
      generator: fullJitterGenerator,
      initialDelay: cfg.BACKEND_RETRY_BASE_DELAY_MS,
      maxDelay: cfg.BACKEND_RETRY_MAX_DELAY_MS,
    }),
  });
  const limiter = bulkhead(cfg.BACKEND_MAX_CONCURRENCY, cfg.BACKEND_MAX_QUEUE);
  // Aggressive: the caller gets its answer at the deadline even if an attempt
  // is stuck; the attempt is aborted through the signal right after.
  // abortOnReturn off: aborting every finished call would build a DOMException
  // (with a stack) per event for nothing; the timer still aborts a late one.
  const deadline = timeout(cfg.BACKEND_DEADLINE_MS, {
    strategy: TimeoutStrategy.Aggressive,
    abortOnReturn: false,
  });

  const breakerState = (): BreakerState => {
    switch (breaker.state) {
      case CircuitState.Closed:
        return "closed";
      case CircuitState.HalfOpen:
        return "half-open";
      default:
        return "open";
    }
  };
  metrics.forwardBreakerState.set(0);
  let openedAt = 0;
  breaker.onBreak((reason) => {
    openedAt = Date.now();
    const last = "error" in reason ? (reason.error as Error).message : "isolated";
    log.warn({ lastFailure: last }, "backend circuit breaker opened");
  });
  // While the breaker is open and no probe is due, answer without entering the
  // policies at all: no timer, no abort controller, no error with a stack.
  // That is what keeps fast-fail acks cheap when a dead backend meets a storm.
  const failingFast = () =>
    breaker.state === CircuitState.Open && Date.now() - openedAt < cfg.BACKEND_BREAKER_HALF_OPEN_MS;
  const BREAKER_OPEN = ackError(
    "BACKEND_UNAVAILABLE",
    "the backend is failing; circuit breaker open",
  );
  breaker.onStateChange(() => {
    const state = breakerState();
    metrics.forwardBreakerState.set(BREAKER_METRIC[state]);
    if (state !== "open") log.info({ breaker: state }, "backend circuit breaker state changed");
  });
  retryPolicy.onRetry(() => metrics.forwardRetries.inc());

  async function attempt(
    id: string,
    body: Buffer,
    attemptNo: number,
    outer: AbortSignal,
  ): Promise<ForwardReply> {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), cfg.BACKEND_ATTEMPT_TIMEOUT_MS);
    const onOuterAbort = () => ctrl.abort();
    outer.addEventListener("abort", onOuterAbort, { once: true });
    try {
      const headers: Record<string, string> = {
        "content-type": "application/json",
        "x-request-id": id,
        "x-attempt": String(attemptNo),
        "user-agent": "socket-server",
      };
      if (cfg.BACKEND_SIGNING_SECRET) {
        headers[SIGNATURE_HEADER] = signatureHeader(cfg.BACKEND_SIGNING_SECRET, body);
      }
      const res = await pool.request({
        path,
        method: "POST",
        headers,
        body,
        signal: ctrl.signal,
      });
      const status = res.statusCode;
      if (status >= 500) {
        await res.body.dump().catch(() => {});
        throw new AttemptFailure("status", `the backend answered ${status}`);
      }
      const text = await readCapped(res.body, cfg.BACKEND_MAX_RESPONSE_BYTES);
      if (text === undefined) {
        return ackError("BACKEND_REJECTED", "the backend's answer was too large");
      }
      if (status >= 200 && status < 300) {
        if (text.trim() === "") return { ok: true, data: null };
        const parsed = parseJson(text);
        return parsed.ok
          ? { ok: true, data: parsed.value }
          : ackError("BACKEND_REJECTED", "the backend answered non-JSON");
      }
      // 4xx (and 1xx/3xx, which undici does not follow): the backend is up and said no.
      const parsed = parseJson(text);
      return ackError("BACKEND_REJECTED", `the backend answered ${status}`, {
        details: parsed.ok ? { status, body: parsed.value } : { status },
      });
    } catch (err) {
      if (err instanceof AttemptFailure) throw err;
      if (ctrl.signal.aborted) {
        throw new AttemptFailure(
          "timeout",
          `no answer within ${cfg.BACKEND_ATTEMPT_TIMEOUT_MS} ms`,
        );
      }
      // Refused, reset, closed mid-request, unparseable HTTP: all transient
      // from here. The same id goes out again; the backend dedupes on it.
      const code = (err as { code?: unknown }).code;
      throw new AttemptFailure(
        "connection",
        `connection to the backend failed${typeof code === "string" ? ` (${code})` : ""}`,
      );
    } finally {
      clearTimeout(timer);
      outer.removeEventListener("abort", onOuterAbort);
    }
  }

  async function send(id: string, body: Buffer): Promise<ForwardReply> {
    if (failingFast()) return BREAKER_OPEN;
    try {
      return await deadline.execute(({ signal }) =>
        limiter.execute(
          ({ signal }) =>
            retryPolicy.execute(
              ({ signal, attempt: retryNo }) =>
                breaker.execute(({ signal }) => attempt(id, body, retryNo + 1, signal), signal),
              signal,
            ),
          signal,
        ),
      );
    } catch (err) {
      if (err instanceof BulkheadRejectedError) {
        return ackError("OVERLOADED", "too many events waiting for the backend", {
          retryAfter: 1,
        });
      }
      if (err instanceof BrokenCircuitError || err instanceof IsolatedCircuitError) {
        return BREAKER_OPEN;
      }
      if (err instanceof TaskCancelledError) return ackError("BACKEND_TIMEOUT");
      if (err instanceof AttemptFailure) {
        log.debug({ id, kind: err.kind, reason: err.message }, "forward gave up");
        return err.kind === "timeout"
          ? ackError("BACKEND_TIMEOUT", err.message)
          : ackError("BACKEND_UNAVAILABLE", err.message);
      }
      throw err;
    }
  }

  // The body is encoded once for every attempt (undici would encode a string
  // again per attempt), and only if the budget took it. Built out here so that
  // the closures that live until the forward settles hold the id, not the
  // text or the event: what is kept is the bytes the budget counted.
  const sendEncoded = (id: string, text: string) => () => send(id, Buffer.from(text));

  const submit = (e: ForwardedEvent, kind: ForwardKind): Promise<ForwardReply> => {
    const serialized = serializeEvent(e);
    if (!serialized.ok) return tracker.refuse(serialized);
    const { id } = e;
    return tracker.run(
      forwardJob(kind, e, Buffer.byteLength(serialized.body)),
      sendEncoded(id, serialized.body),
      (err) => log.error({ err, id }, "forwarding failed unexpectedly"),
    );
  };

  return {
    forward: (e) => submit(e, "client"),
    forwardLifecycle: (e) => submit(e, "lifecycle"),
    status: () => ({
      transport: "http",
      breaker: breakerState(),
      inFlight: tracker.inFlight,
      queued: cfg.BACKEND_MAX_QUEUE - limiter.queueSlots,
      pendingBytes: tracker.pendingBytes,
    }),
    drain: (timeoutMs) => tracker.settle("draining", timeoutMs),
    async close(timeoutMs) {
      const drained = await tracker.settle("closed", timeoutMs);
      if (!drained)
        log.warn({ inFlight: tracker.inFlight }, "forwards still in flight at shutdown");
      await (drained ? pool.close() : pool.destroy()).catch(() => {});
    },
  };
}

/** The body as text, or undefined past `limit` bytes (the rest is not read). */
async function readCapped(
  body: AsyncIterable<Buffer> & { destroy(): unknown },
  limit: number,
): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}
