import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseIpRule } from "../src/shared/cidr.js";
import { CONFIG_VARIABLES, loadConfig } from "../src/shared/config.js";
import { RevocationList } from "../src/shared/revocation-list.js";
import { inspectJson } from "../src/worker/protection/inspect-json.js";
import { createIpDenyList } from "../src/worker/protection/ip-deny-list.js";
import { createLoadShedder } from "../src/worker/protection/load-shedder.js";
import { TokenBucket } from "../src/worker/protection/token-bucket.js";

const MINIMAL = {
  JWT_SECRET: "x".repeat(32),
  API_KEYS: "k".repeat(16),
  DASHBOARD_TOKEN: "d".repeat(16),
};

describe("TokenBucket", () => {
  it("allows the burst at once, then the rate, and says how long to wait", () => {
    const b = new TokenBucket(10, 5, 0);
    for (let i = 0; i < 5; i++) expect(b.take(0)).toBe(0);
    expect(b.take(0)).toBeCloseTo(0.1, 5);
    expect(b.take(50)).toBeCloseTo(0.05, 5); // half a token refilled
    expect(b.take(100)).toBe(0);
    expect(b.take(100)).toBeGreaterThan(0);
  });
  it("never refills past the burst", () => {
    const b = new TokenBucket(10, 3, 0);
    let allowed = 0;
    for (let i = 0; i < 10; i++) if (b.take(60_000) === 0) allowed++;
    expect(allowed).toBe(3);
  });
});

describe("inspectJson", () => {
  const deep = (n: number) => {
    let v: unknown = 1;
    for (let i = 0; i < n; i++) v = [v];
    return v;
  };
  it.each([
    ["a scalar", 42, undefined],
    ["null", null, undefined],
    ["64 levels", deep(64), undefined],
    ["65 levels", deep(65), "nested deeper than 64 levels"],
    ["100k levels (no stack overflow)", deep(100_000), "nested deeper than 64 levels"],
    [
      "a __proto__ key",
      JSON.parse('{"a":{"__proto__":{"x":1}}}'),
      "the key __proto__ is not allowed",
    ],
    [
      "constructor/prototype keys (plain data)",
      { constructor: { prototype: { x: 1 } } },
      undefined,
    ],
    ["a Buffer", { b: Buffer.alloc(10) }, undefined],
  ])("%s", (_name, value, message) => {
    expect(inspectJson(value, 64)?.message).toBe(message);
  });
  it("names the path of the problem", () => {
    expect(inspectJson(JSON.parse('{"a":[{"b":{"__proto__":1}}]}'), 64)).toEqual({
      path: "a.0.b.__proto__",
      message: "the key __proto__ is not allowed",
    });
    expect(inspectJson({ a: { b: { c: 1 } } }, 2)?.path).toBe("a.b");
  });
});

describe("RevocationList", () => {
  it("revokes by jti until the entry expires", () => {
    const l = new RevocationList();
    expect(l.add({ jti: "j1", until: 200 }, 100)).toBe(true);
    expect(l.add({ jti: "j1", until: 150 }, 100)).toBe(false);
    expect(l.isRevoked({ sub: "u", jti: "j1", iat: 90 }, 100)).toBe(true);
    expect(l.isRevoked({ sub: "u", jti: "j2", iat: 90 }, 100)).toBe(false);
    expect(l.isRevoked({ sub: "u", jti: "j1", iat: 90 }, 200)).toBe(false);
    l.prune(200);
    expect(l.size).toBe(0);
  });
  it("revokes a user's tokens issued before a time (no iat counts as before)", () => {
    const l = new RevocationList();
    l.add({ userId: "u", issuedBefore: 100, until: 1000 }, 50);
    expect(l.isRevoked({ sub: "u", iat: 99 }, 60)).toBe(true);
    expect(l.isRevoked({ sub: "u", iat: 100 }, 60)).toBe(false);
    expect(l.isRevoked({ sub: "u", iat: null }, 60)).toBe(true);
    expect(l.isRevoked({ sub: "v", iat: 10 }, 60)).toBe(false);
    // A later revocation widens, an earlier one never narrows.
    expect(l.add({ userId: "u", issuedBefore: 90, until: 500 }, 60)).toBe(false);
    expect(l.add({ userId: "u", issuedBefore: 120, until: 500 }, 60)).toBe(true);
    expect(l.isRevoked({ sub: "u", iat: 110 }, 900)).toBe(true);
    expect(l.entries(60)).toEqual([{ userId: "u", issuedBefore: 120, until: 1000 }]);
  });
  it("ignores entries that have already expired", () => {
    const l = new RevocationList();
    expect(l.add({ jti: "j", until: 100 }, 100)).toBe(false);
    expect(l.size).toBe(0);
  });
});

describe("IP deny list", () => {
  it.each([
    ["10.0.0.0/8", true],
    ["192.168.1.7", true],
    ["2001:db8::/32", true],
    ["10.0.0.0/33", false],
    ["10.0.0/8", false],
    ["example.com", false],
    ["10.0.0.0/8/1", false],
    ["::/x", false],
  ])("parses %s: %s", (text, ok) => {
    expect(parseIpRule(text) !== undefined).toBe(ok);
  });
  it("matches IPv4, IPv4-mapped IPv6 and IPv6", () => {
    const d = createIpDenyList(["10.0.0.0/8", "2001:db8::/32", "127.0.0.2"]);
    expect(d.denied("10.1.2.3")).toBe(true);
    expect(d.denied("::ffff:10.1.2.3")).toBe(true);
    expect(d.denied("11.0.0.1")).toBe(false);
    expect(d.denied("2001:db8::1")).toBe(true);
    expect(d.denied("2001:db9::1")).toBe(false);
    expect(d.denied("127.0.0.2")).toBe(true);
    expect(d.denied("127.0.0.1")).toBe(false);
    expect(d.denied("")).toBe(false);
  });
  it("is a start error when a rule is not a CIDR", () => {
    expect(() => loadConfig({ ...MINIMAL, IP_DENY_LIST: "10.0.0.0/8,nope" })).toThrow(
      /IP_DENY_LIST/,
    );
    expect(loadConfig({ ...MINIMAL, IP_DENY_LIST: "10.0.0.0/8, ::1" }).IP_DENY_LIST).toEqual([
      "10.0.0.0/8",
      "::1",
    ]);
  });
});

describe("protection configuration", () => {
  it("has no test hooks: they live in test/support/worker-hooks.ts, loaded by the tests only", () => {
    expect(CONFIG_VARIABLES).not.toContain("TEST_HOOKS");
    const root = fileURLToPath(new URL("../", import.meta.url));
    // What tsc builds from src/ today (a stale dist/ may still hold removed modules).
    const built = readdirSync(join(root, "src"), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts"))
      .map((f) => join(root, "dist", f.replace(/\.ts$/, ".js")));
    expect(built.length).toBeGreaterThan(0);
    for (const f of built) expect(readFileSync(f, "utf8")).not.toContain("/api/test/");
  });
  it("has defaults a normal app never hits", () => {
    const c = loadConfig(MINIMAL);
    expect(c.RATE_EVENTS_PER_SECOND).toBe(50);
    expect(c.RATE_EVENTS_BURST).toBe(100);
    expect(c.RATE_CONNECTIONS_PER_IP_PER_MINUTE).toBe(6_000);
    expect(c.RATE_PUSHES_PER_KEY_PER_SECOND).toBe(20_000);
    expect(c.MAX_PAYLOAD_DEPTH).toBe(64);
    expect(c.TOKEN_EXPIRY_GRACE_MS).toBe(2_000);
  });
});

describe("load shedder", () => {
  const block = (ms: number) => {
    const until = performance.now() + ms;
    while (performance.now() < until) {}
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const shedder = () =>
    createLoadShedder({
      maxConnections: 100,
      maxLagMs: 150,
      maxPushLagMs: 200,
      connections: () => 0,
      lagP99Ms: () => 0,
    });

  it("a stalled loop refuses handshakes and pushes for a while", async () => {
    const s = shedder();
    block(400);
    await sleep(150);
    expect(s.reason()).toBe("event_loop_lag");
    expect(s.shedsPushes()).toBe(true);
    s.close();
  });

  it("the start-up, forgotten at /ready, is not a stall", async () => {
    const s = shedder();
    block(400); // loading, connecting: before the worker serves
    s.forgetStartUp();
    await sleep(150);
    expect(s.reason()).toBeUndefined();
    expect(s.shedsPushes()).toBe(false);
    s.close();
  });
});
