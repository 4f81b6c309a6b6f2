import { describe, expect, it } from "vitest";
import {
  CONFIG_VARIABLES,
  ConfigError,
  loadConfig,
  SECRET_VARIABLES,
  withDevDefaults,
} from "../src/shared/config.js";

const base = {
  JWT_SECRET: "s".repeat(32),
  API_KEYS: "k".repeat(20),
  DASHBOARD_TOKEN: "d".repeat(20),
};

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  return [];
}

describe("loadConfig", () => {
  it("applies the contract's defaults", () => {
    const c = loadConfig(base);
    expect(c.PORT).toBe(3000);
    expect(c.API_PORT).toBe(3001);
    expect(c.HOST).toBe("0.0.0.0");
    expect(c.WORKERS).toBeGreaterThan(0);
    expect(c.LOG_LEVEL).toBe("info");
    expect(c.MAX_PAYLOAD_BYTES).toBe(1_000_000);
    expect(c.PUSH_BODY_LIMIT_BYTES).toBe(1_048_576);
    expect(c.production).toBe(false);
    // An operator's JWT_SECRET never signs demo tokens, whatever NODE_ENV says.
    expect(c.demo).toBe(false);
    expect(c.corsOrigins).toBe("*");
    expect(c.jwt).toEqual({ kind: "secret", secret: base.JWT_SECRET });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it("is pure: the same env gives the same config", () => {
    expect(loadConfig(base)).toEqual(loadConfig(base));
  });

  // One valid and one invalid value for every variable that has a format.
  const cases: [string, string, string][] = [
    ["PORT", "8080", "70000"],
    ["API_PORT", "8081", "-1"],
    ["WORKERS", "4", "0"],
    ["JWT_ALGORITHMS", "HS256,HS512", "HS999"],
    ["AUTH_VERIFY_MODE", "pool", "sometimes"],
    ["AUTH_POOL_THREADS", "2", "0"],
    ["BACKEND_URL", "http://127.0.0.1:9000", "not a url"],
    ["BACKEND_EVENTS_PATH", "/hooks", "hooks"],
    ["BACKEND_SIGNING_SECRET", "x".repeat(16), "short"],
    ["BACKEND_ATTEMPT_TIMEOUT_MS", "1000", "soon"],
    ["BACKEND_DEADLINE_MS", "9000", "0"],
    ["FORWARD_TRANSPORT", "http", "kafka"],
    ["FORWARD_LIFECYCLE", "true", "maybe"],
    ["REDIS_URL", "redis://127.0.0.1:6379", "http://redis"],
    ["REDIS_ADAPTER_MODE", "sharded", "fancy"],
    ["REDIS_CLUSTER_NODES", "10.0.0.1:6379, redis-2:6380,[::1]:7000", "10.0.0.1"],
    ["LOG_LEVEL", "debug", "loud"],
    ["LOG_FILE_SIZE", "5m", "big"],
    ["LOG_FILE_COUNT", "3", "0"],
    ["REGISTER_TIMEOUT_MS", "500", "-5"],
    ["MAX_PAYLOAD_BYTES", "2048", "1.5"],
    ["PUSH_BODY_LIMIT_BYTES", "4096", "0"],
    ["QUERY_TIMEOUT_MS", "200", "x"],
    ["SHUTDOWN_TIMEOUT_MS", "3000", "0"],
    ["TOKEN_EXPIRY_GRACE_MS", "1000", "60000"],
    ["NODE_ENV", "test", "staging"],
  ];
  for (const [name, good, bad] of cases) {
    it(`${name}: accepts ${JSON.stringify(good)}, refuses ${JSON.stringify(bad)} with one line naming it`, () => {
      expect(problems({ ...base, [name]: good })).toEqual([]);
      const p = problems({ ...base, [name]: bad });
      expect(p).toHaveLength(1);
      expect(p[0]).toMatch(new RegExp(`^${name}: got .*, expected `));
    });
  }

  it("every variable in the schema is covered by a case or documented default test", () => {
    const covered = new Set([
      ...cases.map((c) => c[0]),
      "HOST",
      "JWT_SECRET",
      "JWT_PUBLIC_KEY",
      "JWT_JWKS_URL",
    ]);
    const uncovered = CONFIG_VARIABLES.filter((v) => !covered.has(v));
    // The remaining ones are numeric limits and lists of the same shape.
    for (const v of uncovered) {
      const p = problems({ ...base, [v]: "not-a-valid-value-!!" });
      if (p.length > 0) expect(p[0]).toMatch(new RegExp(`^${v}: `));
    }
  });

  it("never prints a secret back", () => {
    const p = problems({ ...base, JWT_SECRET: "tooshort-secret", API_KEYS: "abc" });
    expect(p.join("\n")).not.toContain("tooshort-secret");
    expect(p.join("\n")).not.toContain('abc"');
    expect(p.some((l) => l.startsWith("JWT_SECRET: got a secret value (not shown)"))).toBe(true);
    for (const v of SECRET_VARIABLES) expect(CONFIG_VARIABLES).toContain(v);
  });

  it("wants exactly one JWT source", () => {
    const { JWT_SECRET: _, ...none } = base;
    expect(problems(none)).toEqual([
      "JWT_SECRET / JWT_PUBLIC_KEY / JWT_JWKS_URL: got none, expected exactly one",
    ]);
    expect(problems({ ...base, JWT_JWKS_URL: "https://x/jwks.json" })).toEqual([
      "JWT_SECRET / JWT_PUBLIC_KEY / JWT_JWKS_URL: got several, expected exactly one",
    ]);
  });

  it("reaches Redis one way: a URL, a Cluster seed list or Sentinels with a master name", () => {
    expect(loadConfig(base).redis).toBeUndefined();
    const url = loadConfig({ ...base, REDIS_URL: "redis://r:6379" });
    expect(url.redis).toEqual({ kind: "url", url: "redis://r:6379" });
    expect(url.redisAdapterMode).toBe("classic");
    const cluster = loadConfig({
      ...base,
      REDIS_CLUSTER_NODES: "10.0.0.1:7000,[::1]:7001",
      REDIS_USERNAME: "socket",
      REDIS_PASSWORD: "pw-secret",
      REDIS_TLS: "true",
    });
    expect(cluster.redis).toEqual({
      kind: "cluster",
      nodes: [
        { host: "10.0.0.1", port: 7000 },
        { host: "::1", port: 7001 },
      ],
      auth: { username: "socket", password: "pw-secret", tls: true },
    });
    // Sharded pub/sub by default on a cluster; classic only when asked for.
    expect(cluster.redisAdapterMode).toBe("sharded");
    expect(
      loadConfig({ ...base, REDIS_CLUSTER_NODES: "h:1", REDIS_ADAPTER_MODE: "classic" })
        .redisAdapterMode,
    ).toBe("classic");
    const sentinel = loadConfig({
      ...base,
      REDIS_SENTINELS: "s1:26379,s2:26379",
      REDIS_SENTINEL_MASTER: "main",
    });
    expect(sentinel.redis).toMatchObject({
      kind: "sentinel",
      master: "main",
      auth: { tls: false },
    });
    expect(sentinel.redisAdapterMode).toBe("classic");

    expect(problems({ ...base, REDIS_URL: "redis://r", REDIS_CLUSTER_NODES: "h:1" })).toEqual([
      "REDIS_URL / REDIS_CLUSTER_NODES: got several, expected at most one way to reach Redis",
    ]);
    expect(problems({ ...base, REDIS_SENTINELS: "s:26379" })).toEqual([
      "REDIS_SENTINEL_MASTER: got missing, expected the master's name with REDIS_SENTINELS",
    ]);
    expect(problems({ ...base, REDIS_SENTINEL_MASTER: "main" })).toEqual([
      "REDIS_SENTINEL_MASTER: got a name, expected REDIS_SENTINELS as well",
    ]);
    // A URL carries its own credentials; the password is never printed.
    const p = problems({ ...base, REDIS_URL: "redis://r", REDIS_PASSWORD: "pw-secret" });
    expect(p).toEqual([
      "REDIS_PASSWORD: got a secret value (not shown), expected REDIS_CLUSTER_NODES or REDIS_SENTINELS, a REDIS_URL carries its own",
    ]);
    expect(problems({ ...base, FORWARD_TRANSPORT: "redis-stream" })[0]).toMatch(
      /^FORWARD_TRANSPORT: /,
    );
    expect(
      problems({ ...base, FORWARD_TRANSPORT: "redis-stream", REDIS_CLUSTER_NODES: "h:1" }),
    ).toEqual([]);
  });

  it("refuses contradictory settings", () => {
    expect(problems({ ...base, JWT_ALGORITHMS: "ES256" })[0]).toMatch(/^JWT_ALGORITHMS: /);
    expect(problems({ ...base, FORWARD_TRANSPORT: "redis-stream" })[0]).toMatch(
      /^FORWARD_TRANSPORT: /,
    );
    expect(problems({ ...base, PORT: "4000", API_PORT: "4000" })[0]).toMatch(/^API_PORT: /);
    expect(
      problems({ ...base, BACKEND_ATTEMPT_TIMEOUT_MS: "9000", BACKEND_DEADLINE_MS: "1000" })[0],
    ).toMatch(/^BACKEND_ATTEMPT_TIMEOUT_MS: /);
  });

  it("production: missing secrets, CORS origins and API keys are one clear line each", () => {
    const p = problems({ NODE_ENV: "production" });
    expect(p).toEqual([
      "JWT_SECRET / JWT_PUBLIC_KEY / JWT_JWKS_URL: got none, expected exactly one",
      "API_KEYS: got missing, expected at least one key",
      "DASHBOARD_TOKEN: got missing, expected a token",
      "CORS_ORIGINS: got missing, expected the allowed origins in production",
    ]);
  });

  it("production: no demo, explicit CORS list", () => {
    const c = loadConfig({
      ...base,
      NODE_ENV: "production",
      CORS_ORIGINS: "https://a.example, https://b.example",
    });
    expect(c.demo).toBe(false);
    expect(c.corsOrigins).toEqual(["https://a.example", "https://b.example"]);
    expect(
      problems({ ...base, NODE_ENV: "production", CORS_ORIGINS: "https://a", DEMO: "true" })[0],
    ).toMatch(/^DEMO: /);
  });

  it("accepts a PEM public key", () => {
    const { JWT_SECRET: _, ...rest } = base;
    const pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----";
    expect(loadConfig({ ...rest, JWT_PUBLIC_KEY: pem }).jwt).toEqual({ kind: "publicKey", pem });
    expect(problems({ ...rest, JWT_PUBLIC_KEY: "not a pem" })[0]).toMatch(/^JWT_PUBLIC_KEY: /);
  });
});

describe("withDevDefaults", () => {
  const rnd = (n: number) => "r".repeat(n);
  it("fills in a secret, an API key and a dashboard token outside production", () => {
    const { env, generated } = withDevDefaults({}, rnd);
    expect(loadConfig(env).demo).toBe(true);
    expect(generated.apiKey).toBe(env.API_KEYS);
    expect(generated.dashboardToken).toBe(env.DASHBOARD_TOKEN);
    expect(generated.jwtSecret).toBe(true);
  });
  it("keeps what is set", () => {
    const { env, generated } = withDevDefaults({ ...base }, rnd);
    expect(env).toEqual(base);
    expect(generated).toEqual({});
    expect(loadConfig(env).demo).toBe(false);
  });
  it("turns the demo on only with the secret it made, and never against DEMO=false", () => {
    expect(loadConfig(withDevDefaults({ DEMO: "false" }, rnd).env).demo).toBe(false);
    expect(loadConfig({ ...base, DEMO: "true" }).demo).toBe(true);
    const pem = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----";
    const { JWT_SECRET: _s, ...rest } = base;
    expect(problems({ ...rest, JWT_PUBLIC_KEY: pem, DEMO: "true" })[0]).toMatch(/^DEMO: /);
  });
  it("changes nothing in production", () => {
    expect(withDevDefaults({ NODE_ENV: "production" }, rnd)).toEqual({
      env: { NODE_ENV: "production" },
      generated: {},
    });
  });
});
