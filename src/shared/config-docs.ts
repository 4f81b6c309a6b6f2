import { CONFIG_VARIABLES, loadConfig, SECRET_VARIABLES } from "./config.js";

/**
 * One line of meaning per variable. The README's configuration table is
 * generated from this and the schema's defaults (`npm run docs:config`), and
 * test/config-docs.test.ts fails when the two drift apart.
 */
export const CONFIG_DESCRIPTIONS: Record<string, string> = {
  NODE_ENV: "`production` turns off every dev default: missing secrets are a start error",
  PORT: "public port: Socket.IO, the demo page, `/health`",
  API_PORT: "internal port: `/api/*`, `/metrics`, `/dashboard`, `/health`, `/ready`",
  HOST: "address both ports listen on",
  API_HOST:
    "bind address of the internal port alone (default: `HOST`); keep `/api/*` on a private interface",
  TRUSTED_PROXIES:
    "comma-separated CIDRs of load balancers whose `X-Forwarded-For` names the client (rightmost untrusted entry)",
  WORKERS: "worker processes (default: the CPU count)",
  JWT_SECRET: "HS256/384/512 secret for client tokens (≥ 32 characters); dev: random",
  JWT_PUBLIC_KEY: "PEM public key for RS*/PS*/ES*/EdDSA client tokens",
  JWT_JWKS_URL: "JWKS URL for client tokens (keys cached, refetched for unknown `kid`)",
  JWT_ISSUER: "required `iss` claim",
  JWT_AUDIENCE: "required `aud` claim",
  JWT_ALGORITHMS: "comma-separated allowed algorithms",
  JWT_MAX_LIFETIME_S:
    "longest accepted token lifetime (`exp` − `iat`); `exp` is required either way",
  JWT_CLOCK_SKEW_S: "how far in the future a token's `iat` may lie",
  AUTH_VERIFY_MODE:
    "`auto` (= `inline`: jose's WebCrypto already verifies off the event loop; measured in bench/), `pool` (Piscina) or `inline`",
  AUTH_POOL_THREADS: "Piscina threads per worker for token verification",
  API_KEYS: "comma-separated keys for `/api/*` (≥ 16 characters each); dev: one printed at start",
  DASHBOARD_TOKEN: "token for `/dashboard` and its live feed; dev: printed at start",
  CORS_ORIGINS: "comma-separated allowed browser origins; dev: any; production: required",
  BACKEND_URL: "where client events are forwarded; unset: forwarding disabled",
  BACKEND_EVENTS_PATH: "path of the forwarding endpoint",
  BACKEND_SIGNING_SECRET: "HMAC key for the `x-signature` header of forwarded requests",
  BACKEND_ATTEMPT_TIMEOUT_MS: "timeout of one forwarding attempt",
  BACKEND_DEADLINE_MS: "overall deadline of a forwarded event, retries included",
  BACKEND_MAX_CONCURRENCY: "forwards in flight per worker",
  BACKEND_MAX_QUEUE: "forwards waiting per worker; beyond it, `OVERLOADED` at once",
  BACKEND_BREAKER_THRESHOLD: "consecutive failures that open the circuit breaker",
  BACKEND_BREAKER_HALF_OPEN_MS: "how long the breaker stays open before a probe",
  BACKEND_MAX_ATTEMPTS: "attempts per forwarded event (first try included)",
  BACKEND_RETRY_BASE_DELAY_MS: "first retry backoff (exponential, full jitter)",
  BACKEND_RETRY_MAX_DELAY_MS: "longest retry backoff",
  BACKEND_MAX_RESPONSE_BYTES: "largest backend answer accepted as ack data",
  FORWARD_TRANSPORT: "`http`, or `redis-stream` (XADD to a Redis Stream; needs `REDIS_URL`)",
  FORWARD_STREAM_KEY: "the stream's key with `redis-stream`",
  FORWARD_STREAM_MAXLEN: "approximate cap of the stream's length",
  FORWARD_LIFECYCLE: "also forward `connect` / `disconnect` of registered users",
  REDIS_URL: "`redis://` or `rediss://` (user and password in the URL): multi-host mode",
  REDIS_ADAPTER_MODE:
    "`classic` pub/sub, or `sharded` (Redis 7 sharded pub/sub, per-room channels)",
  REDIS_KEY_PREFIX: "prefix of every key and channel socket-server uses in Redis",
  LOG_LEVEL: "`fatal` … `trace`, or `silent`",
  LOG_DIR: "also write rotating log files here",
  LOG_FILE_SIZE: "rotate a log file at this size (`10m`, `500k`, `1g`)",
  LOG_FILE_COUNT: "rotated log files kept per process",
  LOG_REDACT_PATHS: "extra comma-separated pino paths to redact (e.g. `payload.card`)",
  REGISTER_TIMEOUT_MS: "a socket not registered by then is disconnected",
  MAX_PAYLOAD_BYTES: "largest client message (Socket.IO `maxHttpBufferSize`)",
  PUSH_BODY_LIMIT_BYTES: "largest HTTP API body",
  QUERY_TIMEOUT_MS: "how long a cluster-wide query waits for a worker or host",
  HTTP_REQUEST_TIMEOUT_MS:
    "headers and body of an HTTP request must arrive within this, on every port (a stalled connection is closed within it + ≤ 5 s)",
  SHUTDOWN_TIMEOUT_MS: "SIGTERM: everything stops within this",
  MAX_EVENT_NAME_LENGTH: "longest event name",
  MAX_ROOM_NAME_LENGTH: "longest room name",
  MAX_ROOMS_PER_SOCKET: "rooms one socket may join itself",
  MAX_USER_IDS_PER_PUSH: "`userIds` and `except` entries in one push",
  PUSH_BATCH_MAX: "pushes in one `/api/push/batch`",
  PING_INTERVAL_MS: "Socket.IO heartbeat interval",
  PING_TIMEOUT_MS: "Socket.IO heartbeat timeout",
  OFFLINE_MAX_PER_USER: "stored pushes per offline user (oldest dropped)",
  OFFLINE_MAX_TOTAL:
    "stored pushes in the store (per host, or in Redis); when full, new ones are refused",
  OFFLINE_MAX_TOTAL_BYTES: "bytes of stored pushes in the store; when full, new ones are refused",
  OFFLINE_MAX_TTL_SECONDS: "largest `ttlSeconds`",
  IDEMPOTENCY_WINDOW_SECONDS: "how long an `idempotencyKey` is remembered",
  IDEMPOTENCY_MAX_KEYS: "idempotency keys remembered per host (oldest forgotten)",
  ACK_TIMEOUT_MAX_MS: "largest `ackTimeoutMs`",
  RATE_EVENTS_PER_SECOND: "client events per socket per second",
  RATE_EVENTS_BURST: "client events per socket in a burst",
  RATE_CONNECTIONS_PER_IP_PER_MINUTE: "handshakes per client IP per minute",
  RATE_PUSHES_PER_KEY_PER_SECOND: "API pushes per API key per second",
  MAX_CONNECTIONS_PER_WORKER: "beyond it new handshakes get `OVERLOADED`",
  MAX_CONNECTIONS_PER_IP:
    "open Engine.IO sessions per client address on this host, token-less ones included (split over the workers)",
  MAX_EVENT_LOOP_LAG_MS: "event-loop lag p99 beyond which a worker sheds new work",
  MAX_BUFFERED_BYTES_PER_SOCKET: "output buffered for a slow client before it is disconnected",
  FORWARD_MAX_PENDING_BYTES_PER_SOCKET:
    "client event bytes one socket may have waiting on the backend; over it, `OVERLOADED`",
  FORWARD_MAX_PENDING_BYTES_PER_WORKER:
    "client event bytes a worker may have waiting on the backend; over it, `OVERLOADED`",
  DASHBOARD_MAX_FAILED_LOGINS:
    "failed dashboard logins from one client address before it gets 429 (at most 20)",
  DASHBOARD_LOCKOUT_S: "how long such an address is answered 429",
  IP_DENY_LIST: "comma-separated CIDRs refused at the handshake",
  TOKEN_EXPIRY_GRACE_MS: "grace after a token's `exp` before the socket is disconnected",
  MAX_PAYLOAD_DEPTH: "nesting of arrays/objects in a client payload or API body",
  REVOCATION_TTL_SECONDS: "how long a revocation is kept without `expiresAt`",
  WORKER_RESTART_BACKOFF_BASE_MS: "first restart delay of a crashed worker (doubles per crash)",
  WORKER_RESTART_BACKOFF_MAX_MS: "longest restart delay of a crashed worker",
  WORKER_MAX_CRASHES: "crashes in a row before the primary gives up and exits 1",
  DEMO: "serve the demo page and its token endpoint, which signs tokens for any user with `JWT_SECRET` (default: on only when the server generated its own secret; refused in production)",
};

const MINIMAL_ENV = {
  JWT_SECRET: "x".repeat(32),
  API_KEYS: "x".repeat(16),
  DASHBOARD_TOKEN: "x".repeat(16),
};

const GENERATED_IN_DEV = new Set(["JWT_SECRET", "API_KEYS", "DASHBOARD_TOKEN"]);

function shownDefault(name: string, value: unknown): string {
  if (name === "WORKERS") return "CPU count";
  if (GENERATED_IN_DEV.has(name)) return "dev: generated";
  if (SECRET_VARIABLES.has(name)) return "unset";
  if (value === undefined || (Array.isArray(value) && value.length === 0)) return "unset";
  return `\`${Array.isArray(value) ? value.join(",") : String(value)}\``;
}

/** The README's configuration table, generated. */
export function configTable(): string {
  const defaults = loadConfig(MINIMAL_ENV) as unknown as Record<string, unknown>;
  const rows = CONFIG_VARIABLES.map((name) => {
    const value = name === "NODE_ENV" ? "development" : defaults[name];
    const meaning = CONFIG_DESCRIPTIONS[name] ?? "(undocumented)";
    return `| \`${name}\` | ${shownDefault(name, value)} | ${meaning} |`;
  });
  return ["| variable | default | meaning |", "|---|---|---|", ...rows].join("\n");
}
