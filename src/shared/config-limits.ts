import { z } from "zod";
import { parseIpRule } from "./cidr.js";
import { csv, nonNegativeInt, positiveInt } from "./config-fields.js";

/**
 * The rate, overload and input limits of CONFIG_SCHEMA (config-schema.ts,
 * which explains the `.describe()` rule): what protects a worker and its
 * clients from a flood, a burst or a slow peer (docs/security.md, "Limits").
 */
export const LIMIT_FIELDS = {
  RATE_EVENTS_PER_SECOND: positiveInt.default(50).describe("client events per socket per second"),
  RATE_EVENTS_BURST: positiveInt.default(100).describe("client events per socket in a burst"),
  // A whole office or mobile carrier can share one address and reconnect at
  // once after a restart; one machine flooding opens thousands a second.
  RATE_CONNECTIONS_PER_IP_PER_MINUTE: positiveInt
    .default(6_000)
    .describe("handshakes per client IP per minute"),
  RATE_PUSHES_PER_KEY_PER_SECOND: positiveInt
    .default(20_000)
    .describe("API pushes per API key per second"),
  RATE_LIMIT_REDIS_WAIT_MS: positiveInt
    .max(10_000)
    .default(250)
    .describe(
      "with `REDIS_URL`: how long a rate check waits for Redis' shared count before this worker's own count decides (a slow or failing-over Redis does not hold handshakes and pushes)",
    ),
  MAX_CONNECTIONS_PER_WORKER: positiveInt
    .default(50_000)
    .describe("beyond it new handshakes get `OVERLOADED`"),
  // Concurrent Engine.IO sessions per client address on this host (token-less
  // ones included); split over the workers like the connection rate.
  MAX_CONNECTIONS_PER_IP: positiveInt
    .min(2)
    .default(2_000)
    .describe(
      "open Engine.IO sessions per client address on this host, token-less ones included (split over the workers)",
    ),
  HANDSHAKES_PER_TURN: nonNegativeInt
    .default(8)
    .describe(
      "new sessions a worker starts, and tokens it sends to verification, per event-loop turn; the rest wait for the next turns, so that connected clients' events are not queued behind a connect burst (0: no limit)",
    ),
  MAX_EVENT_LOOP_LAG_MS: positiveInt
    .default(500)
    .describe("event-loop lag p99 beyond which a worker refuses new sessions (OVERLOADED)"),
  MAX_PUSH_LAG_MS: positiveInt
    .default(2_000)
    .describe(
      "event-loop lag p99 beyond which a worker refuses pushes (503 OVERLOADED): seconds behind, a load nobody can take",
    ),
  MAX_BUFFERED_BYTES_PER_SOCKET: positiveInt
    .default(1_048_576)
    .describe("output buffered for a slow client before it is disconnected"),
  /** Client event bytes waiting on the backend (in flight or queued); over it, OVERLOADED. */
  FORWARD_MAX_PENDING_BYTES_PER_SOCKET: positiveInt
    .default(2_097_152)
    .describe(
      "client event bytes one socket may have waiting on the backend; over it, `OVERLOADED`",
    ),
  FORWARD_MAX_PENDING_BYTES_PER_WORKER: positiveInt
    .default(67_108_864)
    .describe("client event bytes a worker may have waiting on the backend; over it, `OVERLOADED`"),
  /** Failed dashboard logins from one client address before it is answered 429 (at most 20). */
  DASHBOARD_MAX_FAILED_LOGINS: positiveInt
    .max(20)
    .default(20)
    .describe("failed dashboard logins from one client address before it gets 429 (at most 20)"),
  DASHBOARD_LOCKOUT_S: positiveInt
    .default(600)
    .describe("how long such an address is answered 429"),
  IP_DENY_LIST: csv
    .pipe(
      z.array(z.string().refine((s) => parseIpRule(s) !== undefined, "CIDRs such as 10.0.0.0/8")),
    )
    .default([])
    .describe("comma-separated CIDRs refused at the handshake"),
  TOKEN_EXPIRY_GRACE_MS: nonNegativeInt
    .max(10_000)
    .default(2_000)
    .describe("grace after a token's `exp` before the socket is disconnected"),
  /** Arrays and objects nested in one client payload or API body. */
  MAX_PAYLOAD_DEPTH: positiveInt
    .max(10_000)
    .default(64)
    .describe("nesting of arrays/objects in a client payload or API body"),
  /** How long a revocation is kept when the request does not say (`expiresAt`). */
  REVOCATION_TTL_SECONDS: positiveInt
    .default(7 * 24 * 3600)
    .describe("how long a revocation is kept without `expiresAt`"),
};
