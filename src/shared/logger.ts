import { join } from "node:path";
import pino, { type Logger } from "pino";
import type { Config } from "./config.js";
import { metrics } from "./metrics.js";

/**
 * The one root logger of a process (the only singleton). `initLogger` is
 * called once at start by the primary or a worker; modules take a child:
 * `log().child({ module: "gateway" })`.
 *
 * Secrets are kept out in two layers: pino's `redact` removes known fields
 * (tokens, keys, signatures, cookies, authorization headers and the paths in
 * LOG_REDACT_PATHS), and every serialized line is scrubbed of anything that
 * looks like a JWT and of the configured secret values themselves, so a
 * token that ends up in a message string or an error is not written either.
 */

/** Paths never written to a log: tokens, keys, signatures, cookies. */
export const REDACT_PATHS = [
  "token",
  "*.token",
  "auth.token",
  "*.auth.token",
  "apiKey",
  "*.apiKey",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
  'headers["x-signature"]',
  '*.headers["x-signature"]',
  'headers["x-api-key"]',
  '*.headers["x-api-key"]',
  "headers.cookie",
  "*.headers.cookie",
  'headers["set-cookie"]',
  '*.headers["set-cookie"]',
  "cookie",
  "*.cookie",
  "signature",
  "*.signature",
  "secret",
  "*.secret",
  "password",
  "*.password",
];

export const REDACTED = "[redacted]";

export interface LoggerOptions {
  level: string;
  logDir?: string | undefined;
  fileSize?: string;
  fileCount?: number;
  redactPaths?: readonly string[];
  /** Exact values that must never appear in a line (API keys, tokens, secrets). */
  secrets?: readonly string[];
  base: Record<string, unknown>;
  /** Called with each serialized line; the dashboard's recent-entries buffer. */
  onLine?: (line: string) => void;
}

/** The configured secret values, for `LoggerOptions.secrets`. */
export function secretValues(cfg: Config): string[] {
  const out = [...cfg.apiKeys, cfg.dashboardToken];
  if (cfg.jwt.kind === "secret") out.push(cfg.jwt.secret);
  if (cfg.BACKEND_SIGNING_SECRET) out.push(cfg.BACKEND_SIGNING_SECRET);
  return out.filter((s) => s.length >= 8);
}

// A compact JWS (header.payload.signature, base64url, header starting `{"`).
const JWT_PATTERN = String.raw`eyJ[\w-]{6,}\.[\w-]{6,}\.[\w-]*`;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A function that replaces every JWT-looking string and every given secret. */
export function createScrubber(secrets: readonly string[] = []): (line: string) => string {
  const alternatives = [
    JWT_PATTERN,
    ...[...secrets].sort((a, b) => b.length - a.length).map(escapeRegExp),
  ];
  const re = new RegExp(alternatives.join("|"), "g");
  return (line) => line.replace(re, REDACTED);
}

/** Log file base name of a process: `primary` or `worker-<slot>`. */
export function logFileBase(base: Record<string, unknown>): string {
  return base["worker"] === undefined ? "primary" : `worker-${String(base["worker"])}`;
}

const COUNTED_LEVELS: Record<number, string> = { 40: "warn", 50: "error", 60: "fatal" };

let root: Logger = pino({ level: "info", redact: { paths: REDACT_PATHS, censor: REDACTED } });

/** The logger options every process derives from the configuration. */
export function loggerOptionsFrom(
  cfg: Config,
  base: Record<string, unknown>,
  onLine?: (line: string) => void,
): LoggerOptions {
  return {
    level: cfg.LOG_LEVEL,
    logDir: cfg.LOG_DIR,
    fileSize: cfg.LOG_FILE_SIZE,
    fileCount: cfg.LOG_FILE_COUNT,
    redactPaths: cfg.LOG_REDACT_PATHS,
    secrets: secretValues(cfg),
    base,
    ...(onLine ? { onLine } : {}),
  };
}

export function initLogger(opts: LoggerOptions): Logger {
  const redact = { paths: [...REDACT_PATHS, ...(opts.redactPaths ?? [])], censor: REDACTED };
  const streams: pino.StreamEntry[] = [{ level: "trace", stream: process.stdout }];
  if (opts.logDir) {
    // pino-roll runs in a worker thread through pino.transport, so file I/O
    // and rotation stay off the event loop. One file set per process:
    // <LOG_DIR>/<primary|worker-N>.<yyyy-MM-dd>.<n>.log, rotated by size and
    // at midnight, the newest LOG_FILE_COUNT kept (restarted workers included).
    const transport = pino.transport({
      target: "pino-roll",
      options: {
        file: join(opts.logDir, logFileBase(opts.base)),
        extension: ".log",
        size: opts.fileSize ?? "10m",
        frequency: "daily",
        dateFormat: "yyyy-MM-dd",
        mkdir: true,
        limit: { count: opts.fileCount ?? 10, removeOtherLogFiles: true },
      },
    });
    streams.push({ level: "trace", stream: transport });
  }
  if (opts.onLine) {
    const onLine = opts.onLine;
    streams.push({ level: "trace", stream: { write: (line: string) => onLine(line) } });
  }
  const scrub = createScrubber(opts.secrets);
  root = pino(
    {
      level: opts.level,
      redact,
      base: { pid: process.pid, ...opts.base },
      hooks: {
        streamWrite: scrub,
        logMethod(args, method, level) {
          const name = COUNTED_LEVELS[level];
          if (name) {
            metrics.logMessages.inc({ level: name });
            // An error or fatal line is an unexpected error of its module.
            if (level >= 50) {
              const kind = this.bindings()["module"];
              metrics.errors.inc({ kind: typeof kind === "string" ? kind : "main" });
            }
          }
          method.apply(this, args);
        },
      },
    },
    pino.multistream(streams),
  );
  return root;
}

export function log(): Logger {
  return root;
}
