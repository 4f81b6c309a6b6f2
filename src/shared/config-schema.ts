import { availableParallelism } from "node:os";
import { z } from "zod";
import { parseIpRule } from "./cidr.js";
import {
  bool,
  csv,
  nonNegativeInt,
  port,
  positiveInt,
  roomPatterns,
  splitCsv,
  url,
} from "./config-fields.js";
import { LIMIT_FIELDS } from "./config-limits.js";
import { ROOM_PATTERN } from "./names.js";

/**
 * Every environment variable socket-server reads, in one zod schema;
 * `loadConfig` (config.ts) parses it. Each variable's `.describe()` is its
 * line in docs/configuration.md, which is generated from this schema
 * (src/shared/config-docs.ts). `.describe()` comes last, outside
 * `.default()`, `.optional()` and `.pipe()`: zod keeps a description only on
 * the schema it was given to.
 */

function isHostPort(s: string): boolean {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/.exec(s);
  return m !== null && Number(m[2]) > 0 && Number(m[2]) <= 65535;
}

/** redis[s]://[user:password@]host[:port][/db][?options], as ioredis reads it. */
function isRedisUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.hostname !== "" && /^(\/\d*)?$/.test(u.pathname);
  } catch {
    return false;
  }
}

export const JWT_ALGORITHMS = [
  "HS256",
  "HS384",
  "HS512",
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
] as const;

export const CONFIG_SCHEMA = z.object({
  NODE_ENV: z
    .enum(["development", "production", "test"])
    .default("development")
    .describe("`production` turns off every dev default: missing secrets are a start error"),
  PORT: port.default(3000).describe("public port: Socket.IO, the demo page, `/health`"),
  API_PORT: port
    .default(3001)
    .describe("internal port: `/api/*`, `/metrics`, `/dashboard`, `/health`, `/ready`"),
  HOST: z.string().min(1).default("0.0.0.0").describe("address both ports listen on"),
  /** The internal port's own bind address, to keep the backend API on a private interface. */
  API_HOST: z
    .string()
    .min(1)
    .optional()
    .describe(
      "bind address of the internal port alone (default: `HOST`); keep `/api/*` on a private interface",
    ),
  /** Load balancers whose X-Forwarded-For names the client (src/shared/client-address.ts). */
  TRUSTED_PROXIES: csv
    .pipe(
      z.array(z.string().refine((s) => parseIpRule(s) !== undefined, "CIDRs such as 10.0.0.0/8")),
    )
    .default([])
    .describe(
      "comma-separated CIDRs of load balancers whose `X-Forwarded-For` names the client (rightmost untrusted entry)",
    ),
  WORKERS: positiveInt
    .max(256)
    .default(availableParallelism())
    .describe("worker processes (default: the CPU count)"),
  WORKER_SEMI_SPACE_MB: nonNegativeInt
    .max(64)
    .default(4)
    .describe(
      "V8's young generation per worker (`--max-semi-space-size`, MB; 0: V8's default, 16–32 MB). 4 MB took idle memory per connection over all processes from 41 to 18 KB; 1 MB saved as much but cost a quarter of the push rate; 0 (V8's default) costs 34 KB per connection; fan-out to 10k reaches the docs recipe at 4 since broadcasts are written a chunk per tick, frames straight to the socket (bench/RESULTS.md)",
    ),

  JWT_SECRET: z
    .string()
    .min(32, "at least 32 characters")
    .optional()
    .describe("HS256/384/512 secret for client tokens (≥ 32 characters); dev: random"),
  JWT_PUBLIC_KEY: z
    .string()
    .includes("-----BEGIN", { message: "a PEM public key" })
    .optional()
    .describe("PEM public key for RS*/PS*/ES*/EdDSA client tokens"),
  JWT_JWKS_URL: url
    .optional()
    .describe("JWKS URL for client tokens (keys cached, refetched for unknown `kid`)"),
  JWT_ISSUER: z.string().min(1).optional().describe("required `iss` claim"),
  JWT_AUDIENCE: z.string().min(1).optional().describe("required `aud` claim"),
  JWT_ALGORITHMS: csv
    .pipe(z.array(z.enum(JWT_ALGORITHMS)).min(1))
    .optional()
    .describe("comma-separated allowed algorithms"),
  /** Longest accepted token lifetime (exp - iat); unset: any lifetime, but `exp` is always required. */
  JWT_MAX_LIFETIME_S: positiveInt
    .optional()
    .describe("longest accepted token lifetime (`exp` − `iat`); `exp` is required either way"),
  /** How far a token's `iat` may lie in the future (clocks differ). */
  JWT_CLOCK_SKEW_S: nonNegativeInt
    .max(300)
    .default(30)
    .describe("how far in the future a token's `iat` may lie"),
  /** auto: inline (jose's WebCrypto already runs off the event loop; bench/auth-cost.mjs). */
  AUTH_VERIFY_MODE: z
    .enum(["auto", "pool", "inline"])
    .default("auto")
    .describe(
      "`auto` (= `inline`: jose's WebCrypto already verifies off the event loop; measured in bench/), `pool` (Piscina) or `inline`",
    ),
  AUTH_POOL_THREADS: positiveInt
    .max(64)
    .default(1)
    .describe("Piscina threads per worker for token verification"),

  API_KEYS: csv
    .pipe(z.array(z.string().min(16, "each key at least 16 characters")).min(1))
    .optional()
    .describe(
      "comma-separated keys for `/api/*` (≥ 16 characters each); dev: one printed at start",
    ),
  DASHBOARD_TOKEN: z
    .string()
    .min(16, "at least 16 characters")
    .optional()
    .describe("token for `/dashboard` and its live feed; dev: printed at start"),
  CORS_ORIGINS: csv
    .optional()
    .describe("comma-separated allowed browser origins; dev: any; production: required"),

  BACKEND_URL: url
    .optional()
    .describe("where client events are forwarded; unset: forwarding disabled"),
  BACKEND_EVENTS_PATH: z
    .string()
    .startsWith("/")
    .default("/events")
    .describe("path of the forwarding endpoint"),
  BACKEND_SIGNING_SECRET: z
    .string()
    .min(16, "at least 16 characters")
    .optional()
    .describe("HMAC key for the `x-signature` header of forwarded requests"),
  BACKEND_ATTEMPT_TIMEOUT_MS: positiveInt
    .default(2_000)
    .describe("timeout of one forwarding attempt"),
  BACKEND_DEADLINE_MS: positiveInt
    .default(5_000)
    .describe("overall deadline of a forwarded event, retries included"),
  BACKEND_MAX_CONCURRENCY: positiveInt.default(256).describe("forwards in flight per worker"),
  BACKEND_MAX_QUEUE: nonNegativeInt
    .default(1_024)
    .describe("forwards waiting per worker; beyond it, `OVERLOADED` at once"),
  BACKEND_BREAKER_THRESHOLD: positiveInt
    .default(20)
    .describe("consecutive failures that open the circuit breaker"),
  BACKEND_BREAKER_HALF_OPEN_MS: positiveInt
    .default(5_000)
    .describe("how long the breaker stays open before a probe"),
  /** Attempts per event, the first included (retries = attempts - 1), within the deadline. */
  BACKEND_MAX_ATTEMPTS: positiveInt
    .max(20)
    .default(4)
    .describe("attempts per forwarded event (first try included)"),
  /** Full-jitter backoff: retry n waits random(0, min(max, base * 2^(n-1))). */
  BACKEND_RETRY_BASE_DELAY_MS: positiveInt
    .default(100)
    .describe("first retry backoff (exponential, full jitter)"),
  BACKEND_RETRY_MAX_DELAY_MS: positiveInt.default(1_000).describe("longest retry backoff"),
  /** A backend answer larger than this is refused (BACKEND_REJECTED), never buffered. */
  BACKEND_MAX_RESPONSE_BYTES: positiveInt
    .default(1_048_576)
    .describe("largest backend answer accepted as ack data"),
  FORWARD_TRANSPORT: z
    .enum(["http", "redis-stream"])
    .default("http")
    .describe("`http`, or `redis-stream` (XADD to a Redis Stream; needs `REDIS_URL`)"),
  FORWARD_STREAM_KEY: z
    .string()
    .min(1)
    .default("socket-server:events")
    .describe("the stream's key with `redis-stream`"),
  FORWARD_STREAM_MAXLEN: positiveInt
    .default(100_000)
    .describe("approximate cap of the stream's length"),
  FORWARD_LIFECYCLE: bool
    .default(false)
    .describe("also forward `connect` / `disconnect` of registered users"),

  // A malformed URL stops the start; a well-formed one that does not answer
  // (or refuses the password) starts degraded (see docs/scaling.md).
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, "a redis:// or rediss:// URL")
    .refine(
      isRedisUrl,
      "a redis:// or rediss:// URL with a host, an optional port and database number",
    )
    .optional()
    .describe("`redis://` or `rediss://` (user and password in the URL): multi-host mode"),
  REDIS_CLUSTER_NODES: z
    .string()
    .transform(splitCsv)
    .pipe(z.array(z.string().refine(isHostPort, "host:port")).min(1, "at least one host:port"))
    .optional()
    .describe(
      "instead of `REDIS_URL`: a Redis Cluster seed list `host:port,…` (sharded pub/sub; see docs/scaling.md)",
    ),
  REDIS_SENTINELS: z
    .string()
    .transform(splitCsv)
    .pipe(z.array(z.string().refine(isHostPort, "host:port")).min(1, "at least one host:port"))
    .optional()
    .describe("instead of `REDIS_URL`: Redis Sentinel addresses `host:port,…`"),
  REDIS_SENTINEL_MASTER: z
    .string()
    .min(1)
    .optional()
    .describe("the master's name the sentinels monitor (with `REDIS_SENTINELS`)"),
  REDIS_USERNAME: z
    .string()
    .min(1)
    .optional()
    .describe("ACL user for `REDIS_CLUSTER_NODES` or the Sentinel-managed master"),
  REDIS_PASSWORD: z
    .string()
    .min(1)
    .optional()
    .describe("password for `REDIS_CLUSTER_NODES` or the Sentinel-managed master"),
  REDIS_TLS: bool
    .default(false)
    .describe(
      "TLS to the cluster nodes or the Sentinel-managed master (CA: `NODE_EXTRA_CA_CERTS`)",
    ),
  REDIS_ADAPTER_MODE: z
    .enum(["classic", "sharded"])
    .optional()
    .describe(
      "`classic` pub/sub, or `sharded` (Redis 7 sharded pub/sub, per-room channels); default `sharded` with `REDIS_CLUSTER_NODES`, else `classic`",
    ),
  REDIS_KEY_PREFIX: z
    .string()
    .default("socket-server")
    .describe("prefix of every key and channel socket-server uses in Redis"),

  LOG_LEVEL: z
    .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
    .default("info")
    .describe("`fatal` … `trace`, or `silent`"),
  LOG_DIR: z.string().min(1).optional().describe("also write rotating log files here"),
  LOG_FILE_SIZE: z
    .string()
    .regex(/^\d+[kmg]?$/i, "a size such as 10m")
    .default("10m")
    .describe("rotate a log file at this size (`10m`, `500k`, `1g`)"),
  LOG_FILE_COUNT: positiveInt.default(10).describe("rotated log files kept per process"),
  LOG_REDACT_PATHS: csv
    .default([])
    .describe("extra comma-separated pino paths to redact (e.g. `payload.card`)"),

  REGISTER_TIMEOUT_MS: positiveInt
    .default(10_000)
    .describe("a socket not registered by then is disconnected"),
  MAX_PAYLOAD_BYTES: positiveInt
    .default(1_000_000)
    .describe("largest client message (Socket.IO `maxHttpBufferSize`)"),
  PUSH_BODY_LIMIT_BYTES: positiveInt.default(1_048_576).describe("largest HTTP API body"),
  QUERY_TIMEOUT_MS: positiveInt
    .default(1_000)
    .describe("how long a cluster-wide query waits for a worker or host"),
  /**
   * Headers and body of an HTTP request must arrive within this, on every
   * port: a stalled connection is closed within it plus the check interval
   * (src/shared/http-timeouts.ts), under 60 s at the most.
   */
  HTTP_REQUEST_TIMEOUT_MS: positiveInt
    .min(100)
    .max(50_000)
    .default(30_000)
    .describe(
      "headers and body of an HTTP request must arrive within this, on every port (a stalled connection is closed within it + ≤ 5 s)",
    ),
  SHUTDOWN_TIMEOUT_MS: positiveInt
    .default(10_000)
    .describe("SIGTERM: everything stops within this"),
  MAX_EVENT_NAME_LENGTH: positiveInt.default(128).describe("longest event name"),
  MAX_ROOM_NAME_LENGTH: positiveInt.default(200).describe("longest room name"),
  MAX_ROOMS_PER_SOCKET: positiveInt.default(100).describe("rooms one socket may join itself"),
  MAX_USER_IDS_PER_PUSH: positiveInt
    .default(1_000)
    .describe("`userIds` and `except` entries in one push"),
  PUSH_BATCH_MAX: positiveInt.default(100).describe("pushes in one `/api/push/batch`"),
  PING_INTERVAL_MS: positiveInt.default(25_000).describe("Socket.IO heartbeat interval"),
  PING_TIMEOUT_MS: positiveInt.default(20_000).describe("Socket.IO heartbeat timeout"),

  // Rooms that feel live (CONTRACT.md): each feature only in the rooms its list names.
  PRESENCE_ROOMS: roomPatterns
    .default([])
    .describe(
      "rooms with presence, comma-separated exact names or `prefix*` patterns: members get `presence:join` / `presence:leave` and may ask `presence:list`",
    ),
  PRESENCE_LEAVE_DELAY_MS: nonNegativeInt
    .max(600_000)
    .default(5_000)
    .describe(
      "how long a user's last socket must stay out of a presence room before `presence:leave` (a reload within it is no leave)",
    ),
  /** Redis only: a worker's presence entries live as long as its lease, renewed every third of it. */
  PRESENCE_LEASE_MS: positiveInt
    .min(300)
    .max(300_000)
    .default(15_000)
    .describe(
      "with Redis: a worker (or host) that has not renewed its presence lease for this long is gone; its users leave after this plus `PRESENCE_LEAVE_DELAY_MS`",
    ),
  SIGNAL_ROOMS: roomPatterns
    .default([])
    .describe(
      "rooms that relay `room:signal` (typing indicators and the like, never forwarded), comma-separated exact names or `prefix*` patterns",
    ),
  SIGNAL_MAX_BYTES: positiveInt
    .max(65_536)
    .default(1_024)
    .describe("largest `data` of one `room:signal`, as JSON"),
  SIGNAL_RATE_PER_SECOND: positiveInt
    .default(10)
    .describe("`room:signal`s per socket per second (their own bucket, apart from other events)"),
  SIGNAL_RATE_BURST: positiveInt.default(20).describe("`room:signal`s per socket in a burst"),

  OFFLINE_MAX_PER_USER: positiveInt
    .default(100)
    .describe("stored pushes per offline user (oldest dropped)"),
  OFFLINE_MAX_TOTAL: positiveInt
    .default(100_000)
    .describe(
      "stored pushes in the store (per host, or in Redis); when full, new ones are refused",
    ),
  /** Payload bytes (JSON) kept for offline users on this host or in Redis. */
  OFFLINE_MAX_TOTAL_BYTES: positiveInt
    .default(268_435_456)
    .describe("bytes of stored pushes in the store; when full, new ones are refused"),
  OFFLINE_MAX_TTL_SECONDS: positiveInt.default(7 * 24 * 3600).describe("largest `ttlSeconds`"),
  IDEMPOTENCY_WINDOW_SECONDS: positiveInt
    .default(300)
    .describe("how long an `idempotencyKey` is remembered"),
  /** Keys remembered in memory (one host without Redis); the oldest go first past this. */
  IDEMPOTENCY_MAX_KEYS: positiveInt
    .default(1_000_000)
    .describe("idempotency keys remembered per host (oldest forgotten)"),
  ACK_TIMEOUT_MAX_MS: positiveInt.default(30_000).describe("largest `ackTimeoutMs`"),

  HISTORY_ROOMS: csv
    .pipe(z.array(z.string().regex(ROOM_PATTERN, "room names or `prefix:*` patterns")))
    .default([])
    .describe(
      "rooms whose pushes carry a position and are kept for recovery (`room:join` with `since`): exact names or `prefix:*`; other rooms cost nothing",
    ),
  HISTORY_SIZE: positiveInt
    .max(100_000)
    .default(100)
    .describe("pushes kept per history room (the oldest go first)"),
  HISTORY_TTL_S: positiveInt
    .default(300)
    .describe("how long a history room's pushes are kept for recovery"),
  HISTORY_REORDER_WAIT_MS: positiveInt
    .max(10_000)
    .default(250)
    .describe(
      "how long a history room's push that arrives past a gap waits for the ones before it (from another worker or host) before it is delivered anyway",
    ),

  // Rates, overload and input limits (config-limits.ts).
  ...LIMIT_FIELDS,
  WORKER_HANG_TIMEOUT_MS: positiveInt
    .min(500)
    .max(10_000)
    .default(10_000)
    .describe(
      "a worker that has not answered the primary's heartbeat for this long is taken out of rotation, killed and replaced",
    ),
  WORKER_RESTART_BACKOFF_BASE_MS: positiveInt
    .default(250)
    .describe("first restart delay of a crashed worker (doubles per crash)"),
  WORKER_RESTART_BACKOFF_MAX_MS: positiveInt
    .default(15_000)
    .describe("longest restart delay of a crashed worker"),
  /** Crashes in a row (each within 30 s of its start) before the primary gives up. */
  WORKER_MAX_CRASHES: positiveInt
    .default(8)
    .describe("crashes in a row before the primary gives up and exits 1"),

  DEMO: bool
    .optional()
    .describe(
      "serve the demo page and its token endpoint, which signs tokens for any user with `JWT_SECRET` (default: on only when the server generated its own secret; refused in production)",
    ),
});
