import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Client,
  type ClientOptions,
  type ClientState,
  createClient,
  type StateChange,
  type TokenRequest,
} from "../src/client/index.js";
import { signToken } from "./support/fixtures.js";
import { freePort } from "./support/redis.js";
import { startInProcess, type TestServer } from "./support/in-process.js";

// The browser client (src/client) in Node, against the one-process layer (a
// worker behind the primary's modules) and a real HTTP backend: registration,
// token refresh and refusal, typed errors, retries only for retryable codes,
// and the offline queue across a server restart on the same ports (the server
// stopped and started again). One server at a time: metrics are this process's.

/** A real backend: records every forwarded event and answers by event name. */
async function startBackend() {
  const seen: { id: string; event: string; payload: unknown }[] = [];
  const server = http.createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    const e = JSON.parse(body) as { id: string; event: string; payload: unknown };
    seen.push(e);
    const answer = (status: number, json: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(json));
    };
    if (e.event === "reject") return answer(400, { error: "no" });
    // 503 for the first event of this name, 200 afterwards: only a client retry
    // (a new event id) gets through, since the server is told not to retry.
    if (e.event === "flaky" && seen.filter((s) => s.event === "flaky").length === 1) {
      return answer(503, { error: "try later" });
    }
    if (e.event === "slow") await new Promise((r) => setTimeout(r, 1_500));
    answer(200, { echo: e.payload });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    of: (event: string) => seen.filter((s) => s.event === event),
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

let backend: Awaited<ReturnType<typeof startBackend>>;
let server: TestServer;
let ports: { PORT: string; API_PORT: string };
const start = () =>
  startInProcess({
    env: {
      ...ports,
      BACKEND_URL: backend.url,
      // One attempt per event on the server, so a 503 reaches the client as
      // BACKEND_UNAVAILABLE and what retries is the client under test.
      BACKEND_MAX_ATTEMPTS: "1",
      TOKEN_EXPIRY_GRACE_MS: "500",
    },
  });

beforeAll(async () => {
  backend = await startBackend();
  // Fixed (but free) ports: the restart test brings the server back on the same ones.
  ports = { PORT: String(await freePort()), API_PORT: String(await freePort()) };
  server = await start();
});
afterAll(async () => {
  for (const c of clients) c.close();
  expect(await server?.stop()).toBe(0);
  await backend?.stop();
});

const clients: Client[] = [];
afterEach(() => {
  for (const c of clients) c.close();
  clients.length = 0;
});

interface Tracked {
  client: Client;
  states: StateChange[];
  tokenCalls: TokenRequest["reason"][];
}

function track(
  userId: string,
  getToken: (req: TokenRequest) => Promise<string>,
  opts: Partial<ClientOptions> = {},
): Tracked {
  const states: StateChange[] = [];
  const tokenCalls: TokenRequest["reason"][] = [];
  const client = createClient({
    url: `http://127.0.0.1:${ports.PORT}`,
    userId,
    transports: ["websocket"],
    reconnection: { delayMs: 200, maxDelayMs: 1_000 },
    getToken: (req) => {
      tokenCalls.push(req.reason);
      return getToken(req);
    },
    autoConnect: false,
    ...opts,
  });
  client.onState((c) => states.push(c));
  clients.push(client);
  client.connect();
  return { client, states, tokenCalls };
}

function waitState(client: Client, state: ClientState, timeoutMs = 15_000): Promise<StateChange> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`client not ${state} within ${timeoutMs} ms (is ${client.state})`)),
      timeoutMs,
    );
    const off = client.onState((c) => {
      if (c.state !== state) return;
      clearTimeout(timer);
      off();
      resolve(c);
    });
  });
}

/** The current state if it is `state`, else the next change to it. */
function reach(client: Client, state: ClientState, timeoutMs = 15_000): Promise<unknown> {
  return client.state === state ? Promise.resolve() : waitState(client, state, timeoutMs);
}

function nextPush<T>(client: Client, event: string, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} push`)), timeoutMs);
    const off = client.on<T>(event, (payload) => {
      clearTimeout(timer);
      off();
      resolve(payload);
    });
  });
}

const fresh =
  (userId: string, opts: Parameters<typeof signToken>[1] = {}) =>
  () =>
    signToken(userId, opts);

describe("connect and register", () => {
  it("registers on connect, reports its states and receives pushes", async () => {
    const { client, states, tokenCalls } = track("cl-alice", fresh("cl-alice"));
    await waitState(client, "registered");
    expect(states[0]).toMatchObject({ state: "connecting", previous: "offline" });
    expect(states.at(-1)).toMatchObject({ state: "registered", reason: "registered" });
    expect(tokenCalls).toEqual(["connect"]);
    expect(client.rooms).toContain("user:cl-alice");

    const got = nextPush<{ n: number }>(client, "hello");
    const res = await server.api("POST", "/api/push", {
      userId: "cl-alice",
      event: "hello",
      payload: { n: 1 },
    });
    expect(res.status).toBe(202);
    expect(await got).toEqual({ n: 1 });
  });

  it("acks a push that asks for one with the handler's (async) return", async () => {
    const { client } = track("cl-ack", fresh("cl-ack"));
    await waitState(client, "registered");
    const got: unknown[] = [];
    client.on("needs-ack", async (payload) => {
      got.push(payload);
      return { seen: true };
    });
    const res = await server.api("POST", "/api/push", {
      userId: "cl-ack",
      event: "needs-ack",
      payload: { q: 1 },
      options: { ackTimeoutMs: 5_000 },
    });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ delivered: 1, acked: 1 });
    expect(got).toEqual([{ q: 1 }]);
  });

  it("stays offline when the backend kicks the user, until connect() is called", async () => {
    const { client } = track("cl-kim", fresh("cl-kim"));
    await waitState(client, "registered");
    const offline = waitState(client, "offline");
    const res = await server.api("POST", "/api/users/cl-kim/disconnect");
    expect(res.status).toBe(200);
    expect(await offline).toMatchObject({ code: "KICKED" });
    const pending = client.request("echo", { after: "kick" });
    expect(client.queued).toBe(1);
    client.connect();
    await waitState(client, "registered");
    expect(await pending).toEqual({ echo: { after: "kick" } });
  });

  it("fails at once when the server refuses the userId (not the token's sub)", async () => {
    const { client } = track("cl-mallory", fresh("cl-someone-else"));
    const failed = await waitState(client, "failed");
    expect(failed.code).toBe("FORBIDDEN");
    await expect(client.request("echo", {})).rejects.toMatchObject({ code: "FORBIDDEN" });
  });
});

describe("the bundle", () => {
  it("is served at /client.js in every mode, gzipped when asked, as an ES module", async () => {
    const url = `http://127.0.0.1:${ports.PORT}/client.js`;
    const plain = await fetch(url, { headers: { "accept-encoding": "identity" } });
    expect(plain.status).toBe(200);
    expect(plain.headers.get("content-type")).toMatch(/^text\/javascript/);
    expect(plain.headers.get("access-control-allow-origin")).toBe("*");
    const text = await plain.text();
    expect(text).toMatch(/export\s*\{[^}]*createClient/);
    expect(text).not.toMatch(/from\s*"node:|require\("/);
    // fetch decodes gzip itself; the header says it was sent compressed.
    const gz = await fetch(url, { headers: { "accept-encoding": "gzip" } });
    expect(gz.headers.get("content-encoding")).toBe("gzip");
    expect(await gz.text()).toBe(text);
    const again = await fetch(url, { headers: { "if-none-match": gz.headers.get("etag")! } });
    expect(again.status).toBe(304);
  });
});

describe("requests", () => {
  it("resolves with the backend's answer", async () => {
    const { client } = track("cl-bob", fresh("cl-bob"));
    await waitState(client, "registered");
    expect(await client.request("echo", { a: [1, "é✓"] })).toEqual({ echo: { a: [1, "é✓"] } });
  });

  it("queues requests made before connect() and sends them once registered", async () => {
    const client = createClient({
      url: `http://127.0.0.1:${ports.PORT}`,
      userId: "cl-early",
      getToken: fresh("cl-early"),
      autoConnect: false,
    });
    clients.push(client);
    const early = client.request("echo", { early: true });
    expect(client.state).toBe("offline");
    expect(client.queued).toBe(1);
    client.connect();
    expect(await early).toEqual({ echo: { early: true } });
  });

  it("rejects with typed errors and does not retry BACKEND_REJECTED or INVALID_PAYLOAD", async () => {
    const { client } = track("cl-bob", fresh("cl-bob"));
    await waitState(client, "registered");
    const rejected = await client.request("reject", { x: 1 }).catch((e) => e);
    expect(rejected).toMatchObject({ name: "ClientError", code: "BACKEND_REJECTED", attempts: 1 });
    expect(backend.of("reject")).toHaveLength(1);

    const invalid = await client.request("x".repeat(200), {}).catch((e) => e);
    expect(invalid).toMatchObject({ code: "INVALID_PAYLOAD", attempts: 1, event: "x".repeat(200) });
  });

  it("retries BACKEND_UNAVAILABLE: a backend that answers 503 then 200", async () => {
    const { client } = track("cl-carol", fresh("cl-carol"));
    await waitState(client, "registered");
    expect(await client.request("flaky", { k: 1 }, { timeoutMs: 10_000 })).toEqual({
      echo: { k: 1 },
    });
    const seen = backend.of("flaky");
    expect(seen).toHaveLength(2);
    expect(seen[0]!.id).not.toBe(seen[1]!.id);
  });

  it("does not retry when told not to, and times out with TIMEOUT", async () => {
    const { client } = track("cl-carol", fresh("cl-carol"));
    await waitState(client, "registered");
    const slow = await client.request("slow", {}, { timeoutMs: 300 }).catch((e) => e);
    expect(slow).toMatchObject({ code: "TIMEOUT", attempts: 1 });
  });
});

describe("close()", () => {
  it("rejects a request in flight with CLOSED, as the ones still queued", async () => {
    const { client } = track("cl-closer", fresh("cl-closer"));
    await waitState(client, "registered");
    const before = backend.of("slow").length;
    const inFlight = client.request("slow", { n: 1 }).catch((e) => e);
    // On the wire: the backend has it and takes 1.5 s to answer.
    await expect.poll(() => backend.of("slow").length).toBe(before + 1);
    client.close();
    const after = client.request("echo", {}).catch((e) => e);
    expect(await inFlight).toMatchObject({ name: "ClientError", code: "CLOSED", attempts: 1 });
    expect(await after).toMatchObject({ code: "CLOSED" });
  });
});

describe("tokens", () => {
  it("refreshes the token before it expires, without reconnecting", async () => {
    const { client, states, tokenCalls } = track("cl-dave", fresh("cl-dave", { expiresIn: "4s" }));
    await waitState(client, "registered");
    const sid = client.socket.id;
    const firstExpiry = client.tokenExpiresAt!;
    const registeredAt = states.length;
    // Two refreshes (at about 2/3 of each token's remaining life) outlive the first token.
    await expect
      .poll(() => tokenCalls.filter((r) => r === "refresh").length, { timeout: 15_000 })
      .toBeGreaterThanOrEqual(2);
    await expect.poll(() => Date.now(), { timeout: 5_000 }).toBeGreaterThan(firstExpiry + 1_000);
    expect(client.tokenExpiresAt!).toBeGreaterThan(firstExpiry);
    expect(client.socket.id).toBe(sid);
    expect(states.slice(registeredAt)).toEqual([]);
    const got = nextPush(client, "after-refresh");
    await server.api("POST", "/api/push", {
      userId: "cl-dave",
      event: "after-refresh",
      payload: 1,
    });
    expect(await got).toBe(1);
  });

  it("an expired token: asks getToken once more, then gives up with state failed", async () => {
    const expired = () => signToken("cl-erin", { expiresIn: Math.floor(Date.now() / 1000) - 60 });
    const { client, tokenCalls } = track("cl-erin", expired);
    const pending = client.request("echo", { queued: true });
    const failed = await waitState(client, "failed");
    expect(failed.code).toBe("AUTH_EXPIRED");
    expect(tokenCalls).toEqual(["connect", "auth-retry"]);
    await expect(pending).rejects.toMatchObject({ code: "AUTH_EXPIRED" });
  });

  it("a revoked token: the socket is dropped, and a fresh token brings it back", async () => {
    let n = 0;
    const { client, tokenCalls } = track("cl-fay", () =>
      signToken("cl-fay", { jti: `cl-fay-${++n}` }),
    );
    await waitState(client, "registered");
    const sid = client.socket.id;
    const back = waitState(client, "registered", 20_000);
    const res = await server.api("POST", "/api/tokens/revoke", { jti: "cl-fay-1" });
    expect(res.status).toBeLessThan(300);
    await back;
    expect(tokenCalls).toEqual(["connect", "auth-retry"]);
    expect(client.socket.id).not.toBe(sid);
  });

  it("a revoked token that getToken keeps returning: gives up with AUTH_REVOKED", async () => {
    const token = await signToken("cl-gus", { jti: "cl-gus-1" });
    const { client, tokenCalls } = track("cl-gus", async () => token);
    await waitState(client, "registered");
    const failed = waitState(client, "failed", 20_000);
    const res = await server.api("POST", "/api/tokens/revoke", { jti: "cl-gus-1" });
    expect(res.status).toBeLessThan(300);
    expect((await failed).code).toBe("AUTH_REVOKED");
    expect(tokenCalls).toEqual(["connect", "auth-retry"]);
  });
});

describe("offline queue across a server restart", () => {
  it("keeps requests made while the server is down and sends them after re-registering", async () => {
    const { client, states } = track("cl-hal", fresh("cl-hal"));
    const small = track("cl-ivy", fresh("cl-ivy"), { queue: { max: 1 } }).client;
    await Promise.all([waitState(client, "registered"), waitState(small, "registered")]);
    const sid = client.socket.id;

    const lost = waitState(client, "reconnecting");
    expect(await server.stop()).toBe(0);
    await lost;
    expect(states.at(-1)?.state).toBe("reconnecting");

    const queued = [1, 2, 3].map((n) => client.request("echo", { n }, { timeoutMs: 30_000 }));
    // Awaited below; if the test fails first, afterEach's close() rejects them.
    for (const p of queued) p.catch(() => {});
    expect(client.queued).toBe(3);
    await expect(client.request("echo", {}, { queue: false })).rejects.toMatchObject({
      code: "DISCONNECTED",
      attempts: 0,
    });
    await reach(small, "reconnecting");
    const kept = small.request("echo", { kept: true }, { timeoutMs: 30_000 });
    kept.catch(() => {});
    await expect(small.request("echo", { over: true })).rejects.toMatchObject({
      code: "QUEUE_FULL",
    });

    const back = waitState(client, "registered", 30_000);
    server = await start();
    expect(await back).toMatchObject({ reason: "re-registered" });
    expect(client.socket.id).not.toBe(sid);
    expect(await Promise.all(queued)).toEqual([1, 2, 3].map((n) => ({ echo: { n } })));
    expect(await kept).toEqual({ echo: { kept: true } });
    // In order, each once.
    const ns = backend.of("echo").map((e) => (e.payload as { n?: number }).n);
    expect(ns.filter((n) => n !== undefined)).toEqual([1, 2, 3]);
  }, 60_000);
});

describe("rate limits", () => {
  // Its own server; the file's is not needed any more (afterAll's stop is then a no-op).
  beforeAll(async () => {
    expect(await server.stop()).toBe(0);
  });

  it("retries RATE_LIMITED after the server's retryAfter hint; retry: false surfaces it", async () => {
    const limited = await startInProcess({
      env: { BACKEND_URL: backend.url, RATE_EVENTS_PER_SECOND: "2", RATE_EVENTS_BURST: "2" },
    });
    try {
      const client = createClient({
        url: limited.publicUrl,
        userId: "cl-rate",
        getToken: fresh("cl-rate"),
        transports: ["websocket"],
      });
      clients.push(client);
      await waitState(client, "registered");
      const answers = await Promise.all(
        [1, 2, 3, 4, 5].map((r) => client.request("echo", { r }, { timeoutMs: 20_000 })),
      );
      expect(answers).toEqual([1, 2, 3, 4, 5].map((r) => ({ echo: { r } })));

      const once = await Promise.allSettled(
        [1, 2, 3, 4].map((o) => client.request("echo", { o }, { retry: false })),
      );
      const refused = once.flatMap((s) => (s.status === "rejected" ? [s.reason] : []));
      expect(refused.length).toBeGreaterThan(0);
      for (const e of refused) {
        expect(e).toMatchObject({ code: "RATE_LIMITED", attempts: 1 });
        expect(e.retryAfter).toBeGreaterThan(0);
      }
    } finally {
      expect(await limited.stop()).toBe(0);
    }
  }, 45_000);
});
