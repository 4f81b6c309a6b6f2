import type { z } from "zod";
import { CONFIG_SCHEMA, JWT_ALGORITHMS } from "./config-schema.js";
import { parseHostPort, type RedisTarget } from "./redis-target.js";

/**
 * `loadConfig(env)` is pure: it parses the environment once with the one
 * schema (config-schema.ts) and returns a frozen object or throws a
 * ConfigError with one line per problem. Dev defaults (random secrets) are
 * filled in by `withDevDefaults` in the primary, which passes them to the
 * workers through their environment, so all processes agree.
 */

export { CONFIG_SCHEMA, JWT_ALGORITHMS };
const schema = CONFIG_SCHEMA;

type Parsed = z.output<typeof schema>;

export type JwtSource =
  | { kind: "secret"; secret: string }
  | { kind: "publicKey"; pem: string }
  | { kind: "jwks"; url: string };

export interface Config extends Omit<Parsed, "JWT_SECRET" | "JWT_PUBLIC_KEY" | "JWT_JWKS_URL"> {
  readonly production: boolean;
  readonly demo: boolean;
  readonly jwt: JwtSource;
  readonly apiKeys: readonly string[];
  readonly dashboardToken: string;
  readonly corsOrigins: readonly string[] | "*";
  /** Multi-host mode: REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS. */
  readonly redis: RedisTarget | undefined;
  /** REDIS_ADAPTER_MODE, or its default for the target. */
  readonly redisAdapterMode: "classic" | "sharded";
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join("\n")}`);
    this.problems = problems;
  }
}

/** Names whose values are never printed back, not even in errors. */
export const SECRET_VARIABLES = new Set([
  "JWT_SECRET",
  "API_KEYS",
  "DASHBOARD_TOKEN",
  "BACKEND_SIGNING_SECRET",
  "REDIS_URL",
  "REDIS_PASSWORD",
]);

function describeValue(name: string, value: unknown): string {
  if (value === undefined) return "missing";
  if (SECRET_VARIABLES.has(name)) return "a secret value (not shown)";
  const s = String(value);
  return s.length > 40 ? `"${s.slice(0, 40)}…"` : `"${s}"`;
}

/** Parses and validates the environment. Pure: same env, same result. */
export function loadConfig(env: NodeJS.ProcessEnv | Record<string, string | undefined>): Config {
  const known = Object.fromEntries(
    Object.keys(schema.shape)
      .filter((k) => env[k] !== undefined && env[k] !== "")
      .map((k) => [k, env[k]]),
  );
  const result = schema.safeParse(known);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? "?");
      return `${name}: got ${describeValue(name, known[name])}, expected ${issue.message}`;
    });
    throw new ConfigError(problems);
  }
  const c = result.data;
  const production = c.NODE_ENV === "production";
  const problems: string[] = [];

  const jwtSources = [
    c.JWT_SECRET && ({ kind: "secret", secret: c.JWT_SECRET } as const),
    c.JWT_PUBLIC_KEY && ({ kind: "publicKey", pem: c.JWT_PUBLIC_KEY } as const),
    c.JWT_JWKS_URL && ({ kind: "jwks", url: c.JWT_JWKS_URL } as const),
  ].filter((x): x is Exclude<typeof x, undefined | "" | false> => Boolean(x));
  if (jwtSources.length !== 1) {
    problems.push(
      jwtSources.length === 0
        ? "JWT_SECRET / JWT_PUBLIC_KEY / JWT_JWKS_URL: got none, expected exactly one"
        : "JWT_SECRET / JWT_PUBLIC_KEY / JWT_JWKS_URL: got several, expected exactly one",
    );
  }
  if (c.JWT_ALGORITHMS && jwtSources[0]) {
    const hmac = c.JWT_ALGORITHMS.filter((a) => a.startsWith("HS"));
    if (jwtSources[0].kind === "secret" && hmac.length !== c.JWT_ALGORITHMS.length) {
      problems.push("JWT_ALGORITHMS: got asymmetric algorithms, expected HS* with JWT_SECRET");
    }
    if (jwtSources[0].kind !== "secret" && hmac.length > 0) {
      problems.push("JWT_ALGORITHMS: got HS* algorithms, expected none with a public key or JWKS");
    }
  }
  if (!c.API_KEYS) problems.push("API_KEYS: got missing, expected at least one key");
  if (!c.DASHBOARD_TOKEN) problems.push("DASHBOARD_TOKEN: got missing, expected a token");
  if (production && !c.CORS_ORIGINS?.length) {
    problems.push("CORS_ORIGINS: got missing, expected the allowed origins in production");
  }
  const redis = redisTarget(c, problems);
  if (c.FORWARD_TRANSPORT === "redis-stream" && !redis) {
    problems.push(
      'FORWARD_TRANSPORT: got "redis-stream", expected REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS to be set as well',
    );
  }
  if (c.BACKEND_ATTEMPT_TIMEOUT_MS > c.BACKEND_DEADLINE_MS) {
    problems.push(
      "BACKEND_ATTEMPT_TIMEOUT_MS: got more than BACKEND_DEADLINE_MS, expected at most the deadline",
    );
  }
  if (c.PORT !== 0 && c.PORT === c.API_PORT) {
    problems.push("API_PORT: got the same as PORT, expected a different port");
  }
  // The demo signs tokens for any user: only with a secret the server made
  // itself (withDevDefaults sets DEMO then) or an explicit DEMO=true.
  const demo = c.DEMO ?? false;
  if (demo && production) problems.push("DEMO: got true, expected false in production");
  if (demo && jwtSources[0] && jwtSources[0].kind !== "secret") {
    problems.push("DEMO: got true, expected JWT_SECRET as well (the demo signs HS256 tokens)");
  }
  if (c.FORWARD_MAX_PENDING_BYTES_PER_SOCKET < c.MAX_PAYLOAD_BYTES) {
    problems.push(
      "FORWARD_MAX_PENDING_BYTES_PER_SOCKET: got less than MAX_PAYLOAD_BYTES, expected at least one whole event",
    );
  }
  if (c.JWT_MAX_LIFETIME_S !== undefined && c.JWT_MAX_LIFETIME_S <= c.JWT_CLOCK_SKEW_S) {
    problems.push("JWT_MAX_LIFETIME_S: got at most JWT_CLOCK_SKEW_S, expected more");
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const { JWT_SECRET: _s, JWT_PUBLIC_KEY: _p, JWT_JWKS_URL: _j, ...rest } = c;
  return Object.freeze({
    ...rest,
    production,
    demo,
    jwt: jwtSources[0]!,
    apiKeys: Object.freeze([...(c.API_KEYS ?? [])]),
    dashboardToken: c.DASHBOARD_TOKEN!,
    corsOrigins: c.CORS_ORIGINS?.length ? Object.freeze([...c.CORS_ORIGINS]) : "*",
    redis,
    redisAdapterMode: c.REDIS_ADAPTER_MODE ?? (redis?.kind === "cluster" ? "sharded" : "classic"),
  });
}

/** At most one way to reach Redis, with what it needs; problems go to `problems`. */
function redisTarget(c: Parsed, problems: string[]): RedisTarget | undefined {
  const given = [
    c.REDIS_URL && "REDIS_URL",
    c.REDIS_CLUSTER_NODES && "REDIS_CLUSTER_NODES",
    c.REDIS_SENTINELS && "REDIS_SENTINELS",
  ].filter(Boolean);
  if (given.length > 1) {
    problems.push(`${given.join(" / ")}: got several, expected at most one way to reach Redis`);
    return undefined;
  }
  if (c.REDIS_SENTINELS && !c.REDIS_SENTINEL_MASTER) {
    problems.push(
      "REDIS_SENTINEL_MASTER: got missing, expected the master's name with REDIS_SENTINELS",
    );
  }
  if (c.REDIS_SENTINEL_MASTER && !c.REDIS_SENTINELS) {
    problems.push("REDIS_SENTINEL_MASTER: got a name, expected REDIS_SENTINELS as well");
  }
  if (!c.REDIS_CLUSTER_NODES && !c.REDIS_SENTINELS) {
    // A REDIS_URL carries its own credentials and TLS (redis://user:pw@…, rediss://).
    const own = c.REDIS_URL ? ", a REDIS_URL carries its own" : "";
    if (c.REDIS_USERNAME) {
      problems.push(
        `REDIS_USERNAME: got a value, expected REDIS_CLUSTER_NODES or REDIS_SENTINELS${own}`,
      );
    }
    if (c.REDIS_PASSWORD) {
      problems.push(
        `REDIS_PASSWORD: got a secret value (not shown), expected REDIS_CLUSTER_NODES or REDIS_SENTINELS${own}`,
      );
    }
    if (c.REDIS_TLS) {
      problems.push(`REDIS_TLS: got true, expected REDIS_CLUSTER_NODES or REDIS_SENTINELS${own}`);
    }
  }
  const auth = {
    tls: c.REDIS_TLS,
    ...(c.REDIS_USERNAME ? { username: c.REDIS_USERNAME } : {}),
    ...(c.REDIS_PASSWORD ? { password: c.REDIS_PASSWORD } : {}),
  };
  if (c.REDIS_URL) return { kind: "url", url: c.REDIS_URL };
  if (c.REDIS_CLUSTER_NODES) {
    return { kind: "cluster", nodes: c.REDIS_CLUSTER_NODES.map(parseHostPort), auth };
  }
  if (c.REDIS_SENTINELS && c.REDIS_SENTINEL_MASTER) {
    return {
      kind: "sentinel",
      sentinels: c.REDIS_SENTINELS.map(parseHostPort),
      master: c.REDIS_SENTINEL_MASTER,
      auth,
    };
  }
  return undefined;
}

export interface DevDefaults {
  env: Record<string, string | undefined>;
  /** What was generated, to print once at start. */
  generated: { apiKey?: string; dashboardToken?: string; jwtSecret?: boolean };
}

/**
 * Outside production, fills in a random JWT secret (and then turns the demo
 * on, unless DEMO says otherwise), API key and dashboard token where none is set. In production it changes nothing, so that missing
 * secrets fail in `loadConfig`.
 */
export function withDevDefaults(
  env: Record<string, string | undefined>,
  random: (bytes: number) => string,
): DevDefaults {
  if (env.NODE_ENV === "production") return { env: { ...env }, generated: {} };
  const out = { ...env };
  const generated: DevDefaults["generated"] = {};
  if (!out.JWT_SECRET && !out.JWT_PUBLIC_KEY && !out.JWT_JWKS_URL) {
    out.JWT_SECRET = random(32);
    generated.jwtSecret = true;
    // Tokens signed with a secret nobody else has give nothing away: the demo may mint them.
    if (out.DEMO === undefined || out.DEMO === "") out.DEMO = "true";
  }
  if (!out.API_KEYS) {
    out.API_KEYS = `dev_${random(24)}`;
    generated.apiKey = out.API_KEYS;
  }
  if (!out.DASHBOARD_TOKEN) {
    out.DASHBOARD_TOKEN = `dash_${random(18)}`;
    generated.dashboardToken = out.DASHBOARD_TOKEN;
  }
  return { env: out, generated };
}

export type ConfigVariable = keyof typeof schema.shape;

/** Every variable, in the schema's order (the order of docs/configuration.md). */
export const CONFIG_VARIABLES = Object.keys(schema.shape) as ConfigVariable[];
