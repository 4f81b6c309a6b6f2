import { performance } from "node:perf_hooks";
import type { Config } from "../../shared/config.js";
import { type AckError, ackError } from "../../shared/errors.js";
import { BUILT_IN_EVENTS, ROOM_SIGNAL_EVENT } from "../../shared/events.js";
import { metrics } from "../../shared/metrics.js";
import type { GatewayHooks, GatewayServer, GatewaySocket } from "./gateway.js";
import { inspectJson } from "../protection/inspect-json.js";
import { TokenBucket } from "../protection/token-bucket.js";

/**
 * Every client event, built-in or forwarded, takes a token from its socket's
 * bucket (RATE_EVENTS_PER_SECOND, RATE_EVENTS_BURST) and has its arguments
 * checked (MAX_PAYLOAD_DEPTH, no `__proto__` keys). A refusal is an ack:
 * RATE_LIMITED with `retryAfter` (seconds, fractional) or INVALID_PAYLOAD
 * (error acks are counted by code where every ack is, in worker-metrics.ts).
 *
 * Two entry points because Socket.IO runs `onAny` listeners (the gateway's
 * forwarding) before socket middleware: forwarded events are checked by the
 * gateway's `admitEvent` hook, built-in ones (register, auth:refresh,
 * room:join/leave, presence:list, room:signal) by a `socket.use` middleware
 * that skips the others.
 *
 * `room:signal` takes its token from a bucket of its own
 * (SIGNAL_RATE_PER_SECOND, SIGNAL_RATE_BURST): typing indicators neither
 * spend the budget of events for the backend nor get more than their own.
 */

const builtIn = new Set<string>(BUILT_IN_EVENTS);

interface Limit {
  buckets: WeakMap<GatewaySocket, TokenBucket>;
  perSecond: number;
  burst: number;
  scope: string;
}

export function createEventGuard(cfg: Config): {
  hooks: GatewayHooks;
  attach(io: GatewayServer): void;
} {
  const limit = (perSecond: number, burst: number, scope: string): Limit => ({
    buckets: new WeakMap(),
    perSecond,
    burst,
    scope,
  });
  const events = limit(cfg.RATE_EVENTS_PER_SECOND, cfg.RATE_EVENTS_BURST, "events");
  const signals = limit(cfg.SIGNAL_RATE_PER_SECOND, cfg.SIGNAL_RATE_BURST, "signals");

  const admit = (
    socket: GatewaySocket,
    args: readonly unknown[],
    by: Limit = events,
  ): AckError | undefined => {
    let bucket = by.buckets.get(socket);
    const now = performance.now();
    if (!bucket) {
      bucket = new TokenBucket(by.perSecond, by.burst, now);
      by.buckets.set(socket, bucket);
    }
    const wait = bucket.take(now);
    if (wait > 0) {
      metrics.rateLimited.inc({ scope: by.scope });
      if (by === signals) metrics.signals.inc({ outcome: "rate_limited" });
      return ackError("RATE_LIMITED", undefined, { retryAfter: Math.ceil(wait * 1000) / 1000 });
    }
    for (const arg of args) {
      const problem = inspectJson(arg, cfg.MAX_PAYLOAD_DEPTH);
      if (problem) {
        return ackError("INVALID_PAYLOAD", `${problem.path}: ${problem.message}`, {
          details: [problem],
        });
      }
    }
    return undefined;
  };

  return {
    hooks: {
      admitEvent: (socket, _event, payload) => admit(socket, payload ?? []),
    },
    attach(io) {
      // One function for every socket, bound to each (Socket.IO calls a
      // socket's middleware without the socket): no closure per socket.
      function guardBuiltIn(this: GatewaySocket, packet: unknown[], next: (err?: Error) => void) {
        if (!builtIn.has(packet[0] as string)) return next();
        const last: unknown = packet[packet.length - 1];
        const ack = typeof last === "function" ? (last as (r: unknown) => void) : undefined;
        const args = ack ? packet.slice(1, -1) : packet.slice(1);
        // Built-ins take one object: without it their handler would take the
        // ack for the request and never answer.
        const arg: unknown = args[0];
        const refused =
          admit(this, args, packet[0] === ROOM_SIGNAL_EVENT ? signals : events) ??
          (args.length !== 1 || typeof arg !== "object" || arg === null || Array.isArray(arg)
            ? ackError("INVALID_PAYLOAD", `${String(packet[0])} takes one object argument`)
            : undefined);
        if (!refused) return next();
        ack?.(refused);
      }
      io.on("connection", (socket) => {
        socket.use(guardBuiltIn.bind(socket));
      });
    },
  };
}
