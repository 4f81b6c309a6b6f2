import http from "node:http";
import net from "node:net";
import { exportSPKI, generateKeyPair, SignJWT } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { connectRegistered, emitAck, nextEvent } from "./support/client.js";
import {
  signToken,
  TEST_API_KEY,
  TEST_DASHBOARD_TOKEN,
  TEST_JWT_SECRET,
} from "./support/fixtures.js";
import { closeOpened, open, refused, until } from "./support/protection.js";
import { useInProcessServer } from "./support/in-process.js";
import { readBody, startServer, useServer } from "./support/server.js";

// Issue 13's holes, each reproduced from outside against a real cluster: a
// server started the way operators often do (their own JWT_SECRET and
// API_KEYS, no NODE_ENV) must give nothing away.

afterEach(() => closeOpened());

const secret = new TextEncoder().encode(TEST_JWT_SECRET);

/** A raw request on its own connection from a chosen loopback address. */
function get(
  url: string,
  path: string,
  opts: { from?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; text: string; body: unknown }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path,
        agent: false,
        headers: opts.headers ?? {},
        ...(opts.from ? { localAddress: opts.from } : {}),
      },
      (res) => void readBody(res).then((b) => resolve({ status: res.statusCode ?? 0, ...b })),
    );
    req.on("error", reject);
    req.end();
  });
}

/** What anyone on the public port can try: a demo token for another user. */
function askDemoToken(publicUrl: string): Promise<Response> {
  return fetch(`${publicUrl}/demo/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ userId: "alice" }),
  });
}

/** Writes `bytes` and never finishes the request; resolves with how long the server kept the connection. */
function stall(port: number, bytes: string): Promise<{ ms: number; answer: string }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    let answer = "";
    const s = net.connect(port, "127.0.0.1", () => s.write(bytes));
    s.setEncoding("latin1");
    s.on("data", (d: string) => {
      answer += d;
    });
    s.on("error", () => {});
    s.on("close", () => resolve({ ms: Date.now() - t0, answer: answer.split("\r\n")[0] ?? "" }));
    setTimeout(() => {
      s.destroy();
      reject(new Error(`${JSON.stringify(bytes.slice(0, 30))}: still open after 15 s`));
    }, 15_000).unref();
  });
}

// The banners are the primary's: these two start the real server.
describe("an operator's own JWT_SECRET, no NODE_ENV", () => {
  const server = useServer({
    workers: 1,
    env: { NODE_ENV: undefined, JWT_MAX_LIFETIME_S: "3600", HTTP_REQUEST_TIMEOUT_MS: "1000" },
  });

  it("mints no tokens: /demo/token and the demo page are not there, and the banner says so", async () => {
    const res = await askDemoToken(server.publicUrl);
    expect(res.status).toBe(404);
    expect((await fetch(`${server.publicUrl}/`)).status).toBe(404);
    await server.waitForOutput(/demo page and \/demo\/token: off/, 5_000);
  });

  it.each([["*"], ["user:*"], ["u*"]])(
    "a rooms claim of %s does not reach another user's personal room",
    async (claim) => {
      const victim = await connectRegistered(server.publicUrl, await signToken("victim"), "victim");
      const attacker = await connectRegistered(
        server.publicUrl,
        await signToken("mallory", { rooms: [claim] }),
        "mallory",
      );
      for (const event of ["room:join", "room:leave"]) {
        const ack = await emitAck<{ ok: boolean; error?: { code: string } }>(attacker, event, {
          room: "user:victim",
        });
        expect(ack.error?.code).toBe("FORBIDDEN");
      }
      // Its own personal room and ordinary rooms still follow the claim.
      if (claim !== "user:*") {
        expect(await emitAck(attacker, "room:join", { room: "user:mallory" })).toMatchObject({
          ok: true,
        });
      }
      const leaked: unknown[] = [];
      attacker.on("secret", (p) => leaked.push(p));
      const got = nextEvent(victim, "secret");
      const res = await server.api("POST", "/api/push", {
        userId: "victim",
        event: "secret",
        payload: { n: 1 },
      });
      expect(res.status).toBe(202);
      expect(await got).toEqual({ n: 1 });
      await new Promise((r) => setTimeout(r, 200));
      expect(leaked).toEqual([]);
      victim.close();
      attacker.close();
    },
  );

  it("the backend can still place a user in a personal room", async () => {
    const s = await connectRegistered(server.publicUrl, await signToken("carol"), "carol");
    const res = await server.api("PUT", "/api/rooms/user:dave/members/carol");
    expect(res.status).toBeLessThan(300);
    const got = nextEvent(s, "for-dave");
    await server.api("POST", "/api/push", { room: "user:dave", event: "for-dave", payload: 1 });
    expect(await got).toBe(1);
    s.close();
  });

  it("refuses a token without exp, one issued in the future, one longer than JWT_MAX_LIFETIME_S", async () => {
    const now = Math.floor(Date.now() / 1000);
    const sign = (claims: { iat?: number; exp?: number }) => {
      const jwt = new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("t");
      if (claims.iat !== undefined) jwt.setIssuedAt(claims.iat);
      if (claims.exp !== undefined) jwt.setExpirationTime(claims.exp);
      return jwt.sign(secret);
    };
    for (const claims of [
      { iat: now },
      {},
      { iat: now + 600, exp: now + 1200 },
      { iat: now, exp: now + 7200 },
      { exp: now + 7200 },
    ]) {
      const err = await refused(open(server.publicUrl, await sign(claims)));
      expect({ claims, data: err.data }).toEqual({ claims, data: { code: "AUTH_INVALID" } });
    }
    // Within the clock skew and the lifetime: accepted.
    (await open(server.publicUrl, await sign({ iat: now + 5, exp: now + 1800 }))).close();
    // auth:refresh takes the same rules.
    const s = await connectRegistered(server.publicUrl, await signToken("t"), "t");
    const ack = await emitAck<{ ok: boolean; error?: { code: string } }>(s, "auth:refresh", {
      token: await sign({ iat: now }),
    });
    expect(ack.ok).toBe(false);
    s.close();
  });

  it("closes a stalled HTTP connection on every port and in every process, within the timeout", async () => {
    const key = `Authorization: Bearer ${TEST_API_KEY}\r\n`;
    const cases = [
      ["public, nothing sent (primary)", server.publicPort, ""],
      ["public, request line (primary)", server.publicPort, "GET /health HTTP/1.1\r\nHost: x\r\n"],
      [
        "public, headers (worker)",
        server.publicPort,
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n",
      ],
      ["API, headers (primary)", server.apiPort, "GET /metrics HTTP/1.1\r\nHost: x\r\n"],
      [
        "API, body (worker)",
        server.apiPort,
        `POST /api/push HTTP/1.1\r\nHost: x\r\n${key}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{`,
      ],
      ["API, headers (worker)", server.apiPort, `GET /api/status HTTP/1.1\r\nHost: x\r\n${key}`],
    ] as const;
    const results = await Promise.all(cases.map(([, port, bytes]) => stall(port, bytes)));
    results.forEach((r, i) => {
      // HTTP_REQUEST_TIMEOUT_MS=1000, checked every 250 ms.
      expect({ case: cases[i]![0], closed: r.ms < 4_000 }).toEqual({
        case: cases[i]![0],
        closed: true,
      });
    });
    console.log(
      `[figures] stalled connections closed after ${results.map((r) => r.ms).join(", ")} ms (timeout 1 s)`,
    );
  });

  it("leaves websockets, long polls and idle keep-alive API connections alone", async () => {
    const ws = await connectRegistered(server.publicUrl, await signToken("w"), "w");
    const poll = await connectRegistered(server.publicUrl, await signToken("p"), "p", {
      transports: ["polling"],
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const status = () =>
      new Promise<number>((resolve, reject) => {
        http
          .get(
            `${server.apiUrl}/api/status`,
            { agent, headers: { authorization: `Bearer ${TEST_API_KEY}` } },
            (res) => void readBody(res).then(() => resolve(res.statusCode ?? 0)),
          )
          .on("error", reject);
      });
    expect(await status()).toBe(200);
    await new Promise((r) => setTimeout(r, 3_000));
    expect(ws.connected && poll.connected).toBe(true);
    expect(await status()).toBe(200);
    const got = [nextEvent(ws, "still"), nextEvent(poll, "still")];
    await server.api("POST", "/api/push", { userIds: ["w", "p"], event: "still", payload: 1 });
    expect(await Promise.all(got)).toEqual([1, 1]);
    agent.destroy();
    ws.close();
    poll.close();
  });
});

describe("DEMO=true, explicitly", () => {
  const server = useServer({ workers: 1, env: { NODE_ENV: undefined, DEMO: "true" } });
  it("mints demo tokens, and the banner says who asked for it", async () => {
    const res = await askDemoToken(server.publicUrl);
    expect(res.status).toBe(200);
    expect(server.output()).toMatch(/DEMO=true/);
  });
});

describe("per-address admission from the first Engine.IO request", () => {
  const server = useInProcessServer({
    env: {
      RATE_CONNECTIONS_PER_IP_PER_MINUTE: "6",
      MAX_CONNECTIONS_PER_IP: "3",
      MAX_CONNECTIONS_PER_WORKER: "80",
    },
  });
  const connections = async () => {
    const res = await server.api("GET", "/api/status");
    return ((await res.json()) as { connections: number }).connections;
  };
  const handshake = (from: string) =>
    get(server.publicUrl, "/socket.io/?EIO=4&transport=polling", { from });

  it("token-less sessions count: past the address's limits they are closed and cannot fill the worker", async () => {
    const answers = [];
    for (let i = 0; i < 90; i++) answers.push((await handshake("127.0.0.2")).status);
    // The first three hold their sessions (until Socket.IO's connect timeout);
    // the rest were refused: opened briefly to say why (at most 64 at a
    // time per address), or refused outright.
    expect(answers.slice(0, 3)).toEqual([200, 200, 200]);
    expect(answers.filter((s) => s === 403).length).toBeGreaterThanOrEqual(90 - 3 - 64);
    await until(async () => (await connections()) <= 3, 5_000);
    // The worker's cap (80) is not full: another address connects.
    (await open(server.publicUrl, await signToken("other"), { from: "127.0.0.3" })).close();
    // A real client from the limited address learns why.
    const err = await refused(open(server.publicUrl, await signToken("x"), { from: "127.0.0.2" }));
    expect(err.data?.code).toBe("RATE_LIMITED");
  });

  it("open sessions per address are capped; closing one makes room", async () => {
    const from = "127.0.0.4";
    const token = await signToken("cap");
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await open(server.publicUrl, token, { from }));
    const err = await refused(open(server.publicUrl, token, { from }));
    expect(err.data?.code).toBe("RATE_LIMITED");
    (await open(server.publicUrl, token, { from: "127.0.0.5" })).close();
    held[0]!.close();
    await new Promise((r) => setTimeout(r, 2_500)); // the refused session's own close
    (await open(server.publicUrl, token, { from })).close();
  });
});

describe("TRUSTED_PROXIES", () => {
  const server = useInProcessServer({
    env: {
      TRUSTED_PROXIES: "127.0.0.2/32",
      IP_DENY_LIST: "198.51.100.9",
      RATE_CONNECTIONS_PER_IP_PER_MINUTE: "2",
    },
  });
  const via = async (from: string, xff: string) => {
    const s = open(server.publicUrl, await signToken("p"), {
      from,
      extraHeaders: { "x-forwarded-for": xff },
    });
    try {
      (await s).close();
      return "connected";
    } catch (err) {
      return (err as { data?: { code?: string } }).data?.code ?? String(err);
    }
  };

  it("from a trusted proxy, the rightmost untrusted X-Forwarded-For entry is the client", async () => {
    expect(await via("127.0.0.2", "198.51.100.9")).toBe("FORBIDDEN");
    expect(await via("127.0.0.2", "198.51.100.9, 127.0.0.2")).toBe("FORBIDDEN");
    // A forged entry on the left is not the client.
    expect(await via("127.0.0.2", "198.51.100.9, 203.0.113.5")).toBe("connected");
  });

  it("from an untrusted peer, X-Forwarded-For is ignored", async () => {
    expect(await via("127.0.0.3", "198.51.100.9")).toBe("connected");
    // And cannot buy a fresh rate budget: two handshakes a minute for 127.0.0.3 itself.
    expect(await via("127.0.0.3", "203.0.113.77")).toBe("connected");
    expect(await via("127.0.0.3", "203.0.113.78")).toBe("RATE_LIMITED");
  });

  it("clients behind one proxy have rate budgets of their own", async () => {
    expect(await via("127.0.0.2", "203.0.113.1")).toBe("connected");
    expect(await via("127.0.0.2", "203.0.113.1")).toBe("connected");
    expect(await via("127.0.0.2", "203.0.113.1")).toBe("RATE_LIMITED");
    expect(await via("127.0.0.2", "203.0.113.2")).toBe("connected");
  });
});

describe("CORS_ORIGINS and API_HOST", () => {
  const server = useInProcessServer({
    env: { CORS_ORIGINS: "https://good.example", API_HOST: "127.0.0.2" },
  });
  const upgrade = (sid: string, origin: string) =>
    new Promise<string>((resolve) => {
      const ws = new WebSocket(
        `${server.publicUrl.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket&sid=${sid}`,
        { headers: { origin } },
      );
      ws.once("unexpected-response", (_req, res) => resolve(`HTTP ${res.statusCode}`));
      ws.once("open", () => {
        ws.close();
        resolve("101");
      });
      ws.once("error", (err) => resolve(err.message));
    });

  it("checks the Origin of every request of a session, the websocket upgrade included", async () => {
    const good = { origin: "https://good.example" };
    const evil = { origin: "https://evil.example" };
    const hs = await get(server.publicUrl, "/socket.io/?EIO=4&transport=polling", {
      headers: good,
    });
    expect(hs.status).toBe(200);
    const sid = (JSON.parse(hs.text.slice(1)) as { sid: string }).sid;
    expect(await upgrade(sid, evil.origin)).toBe("HTTP 400");
    const poll = await get(server.publicUrl, `/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
      headers: evil,
    });
    expect(poll.status).toBe(403);
    expect(await upgrade(sid, good.origin)).toBe("101");
    // No Origin at all (servers, native apps): not refused for it.
    expect((await get(server.publicUrl, "/socket.io/?EIO=4&transport=polling")).status).toBe(200);
  });

  it("binds the internal port to API_HOST alone", async () => {
    expect((await get(`http://127.0.0.2:${server.apiPort}`, "/ready")).status).toBe(200);
    await expect(get(`http://127.0.0.1:${server.apiPort}`, "/ready")).rejects.toThrow(
      /ECONNREFUSED/,
    );
  });
});

describe("production with a public key and no JWT_AUDIENCE", () => {
  it("starts, and warns that any token of that key is accepted", async () => {
    const { publicKey } = await generateKeyPair("ES256");
    const server = await startServer({
      workers: 1,
      bare: true,
      env: {
        NODE_ENV: "production",
        JWT_PUBLIC_KEY: await exportSPKI(publicKey),
        API_KEYS: TEST_API_KEY,
        DASHBOARD_TOKEN: TEST_DASHBOARD_TOKEN,
        CORS_ORIGINS: "https://app.example",
      },
    });
    try {
      expect(server.output()).toMatch(/JWT_AUDIENCE is not set/);
      await server.waitForOutput(/demo page and \/demo\/token: off/, 5_000);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});
