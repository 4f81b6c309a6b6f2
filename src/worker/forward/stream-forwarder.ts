import type { RedisTarget } from "../../shared/redis-target.js";
import { createRedisClient } from "../redis/redis-clients.js";
import type { Logger } from "pino";
import type { Config } from "../../shared/config.js";
import { ackError } from "../../shared/errors.js";
import type { ForwardedEvent, ForwardReply } from "./backend-contract.js";
import { createForwardBudget } from "./forward-budget.js";
import {
  createForwardTracker,
  type ForwardKind,
  type ForwardService,
  forwardJob,
} from "./forward-service.js";
import { toForwardableJson } from "./serialize-event.js";
import { waitForReady } from "../redis/wait-ready.js";

/**
 * FORWARD_TRANSPORT=redis-stream: every event is appended to the Redis Stream
 * FORWARD_STREAM_KEY (`XADD key MAXLEN ~ FORWARD_STREAM_MAXLEN * field value …`)
 * for a backend that reads it with a consumer group. The client's ack then
 * means "queued in Redis" — `{ ok: true, data: { queued: true, streamId } }` —
 * as durable as that Redis is configured to be (AOF/replicas are its business).
 *
 * Fields (all strings): id, event, payload (JSON), userId, socketId,
 * rooms (JSON array), receivedAt (ISO 8601).
 *
 * No retry here: an XADD that timed out may have been applied, and Redis is
 * either up (milliseconds) or down (fail fast). The offline queue is off, so
 * while Redis is unreachable events are refused with BACKEND_UNAVAILABLE at
 * once instead of piling up in memory; ioredis reconnects by itself.
 */
export interface StreamForwarderDeps {
  cfg: Config;
  log: Logger;
  target: RedisTarget;
}

export function createStreamForwarder(deps: StreamForwarderDeps): ForwardService {
  const { cfg } = deps;
  const log = deps.log.child({ module: "forward" });
  const tracker = createForwardTracker(createForwardBudget(cfg));
  const redis = createRedisClient(deps.target, {
    enableOfflineQueue: false,
    commandTimeout: cfg.BACKEND_ATTEMPT_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    connectionName: "socket-server:forward",
    retryStrategy: (times) => Math.min(times * 200, 2_000),
  });
  let everReady = false;
  let down = false;
  redis.on("ready", () => {
    everReady = true;
    if (down) log.info("event stream reachable again");
    down = false;
  });
  redis.on("error", (err: Error) => {
    // One line per outage, not one per reconnect attempt.
    if (!down) log.warn({ err: err.message }, "event stream (Redis) unreachable");
    down = true;
  });
  const limit = cfg.BACKEND_MAX_CONCURRENCY + cfg.BACKEND_MAX_QUEUE;

  // Right after start the connection may still be opening: wait for it a
  // little rather than refusing the first events.

  async function append(id: string, fields: string[]): Promise<ForwardReply> {
    if (redis.status !== "ready") {
      if (everReady || !(await waitForReady(redis, cfg.BACKEND_DEADLINE_MS))) {
        return ackError("BACKEND_UNAVAILABLE", "the event stream is unreachable");
      }
    }
    try {
      const streamId = await redis.xadd(
        cfg.FORWARD_STREAM_KEY,
        "MAXLEN",
        "~",
        String(cfg.FORWARD_STREAM_MAXLEN),
        "*",
        ...fields,
      );
      return { ok: true, data: { queued: true, streamId } };
    } catch (err) {
      const message = (err as Error).message ?? "";
      if (/timed out/i.test(message)) return ackError("BACKEND_TIMEOUT");
      log.debug({ err: message, id }, "XADD failed");
      // A connection lost mid-command is an outage, anything else Redis's answer.
      return redis.status === "ready"
        ? ackError("BACKEND_UNAVAILABLE", "the event stream refused the event")
        : ackError("BACKEND_UNAVAILABLE", "the event stream is unreachable");
    }
  }

  const submit = (e: ForwardedEvent, kind: ForwardKind): Promise<ForwardReply> => {
    const payload = toForwardableJson(e.payload);
    if (!payload.ok) return tracker.refuse(payload);
    if (tracker.inFlight >= limit) {
      return tracker.refuse(
        ackError("OVERLOADED", "too many events waiting for the stream", { retryAfter: 1 }),
      );
    }
    const fields = [
      "id",
      e.id,
      "event",
      e.event,
      "payload",
      payload.json,
      "userId",
      e.userId,
      "socketId",
      e.socketId,
      "rooms",
      JSON.stringify(e.rooms),
      "receivedAt",
      e.receivedAt,
    ];
    // What waits in memory until Redis answers: the size the budget counts.
    let bytes = 0;
    for (const f of fields) bytes += Buffer.byteLength(f);
    const { id } = e;
    return tracker.run(
      forwardJob(kind, e, bytes),
      () => append(id, fields),
      (err) => log.error({ err, id }, "stream append failed unexpectedly"),
    );
  };

  return {
    forward: (e) => submit(e, "client"),
    forwardLifecycle: (e) => submit(e, "lifecycle"),
    status: () => ({
      transport: "redis-stream",
      breaker: null,
      inFlight: tracker.inFlight,
      pendingBytes: tracker.pendingBytes,
      stream: cfg.FORWARD_STREAM_KEY,
      redis: redis.status === "ready" ? "up" : "down",
    }),
    drain: (timeoutMs) => tracker.settle("draining", timeoutMs),
    async close(timeoutMs) {
      await tracker.settle("closed", timeoutMs);
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
