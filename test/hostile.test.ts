import http from "node:http";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signToken, TEST_API_KEY } from "./support/fixtures.js";
import { RawSocket } from "./support/raw-socket.js";
import { type RunningServer, startServer } from "./support/server.js";

/**
 * A table-driven battery of hostile input, each case with the exact answer
 * expected: HTTP bodies and headers on the API, socket events and raw
 * Socket.IO frames on the public port. Afterwards both workers are asked
 * whether anything reached Object.prototype.
 */

let server: RunningServer;
beforeAll(async () => {
  server = await startServer({
    workers: 2,
    testHooks: true,
    env: {
      MAX_USER_IDS_PER_PUSH: "10",
      MAX_PAYLOAD_BYTES: "65536",
      CORS_ORIGINS: "http://allowed.example",
      RATE_EVENTS_BURST: "10000",
      RATE_EVENTS_PER_SECOND: "10000",
    },
  });
});
afterAll(async () => {
  expect(await server.stop()).toBe(0);
});

const deep = (n: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < n; i++) v = [v];
  return v;
};
const deepText = (n: number) => `${"[".repeat(n)}1${"]".repeat(n)}`;
const push = (extra: Record<string, unknown>) =>
  JSON.stringify({ userId: "h", event: "e", payload: 1, ...extra });

interface HttpCase {
  name: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  status: number;
  code?: string;
  /** `details[0].path` of a 400. */
  detail?: string;
}

const JSON_CT = { "content-type": "application/json" };
const HTTP_CASES: HttpCase[] = [
  {
    name: "truncated JSON",
    headers: JSON_CT,
    body: '{"userId":',
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "(body)",
  },
  {
    name: "NaN is not JSON",
    headers: JSON_CT,
    body: push({}).replace('"payload":1', '"payload":NaN'),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "(body)",
  },
  {
    name: "text/plain body",
    headers: { "content-type": "text/plain" },
    body: push({}),
    status: 415,
    code: "UNSUPPORTED_MEDIA_TYPE",
  },
  {
    name: "body without content-type",
    body: push({}),
    status: 415,
    code: "UNSUPPORTED_MEDIA_TYPE",
  },
  {
    name: "form-encoded body",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: "userId=h&event=e",
    status: 415,
    code: "UNSUPPORTED_MEDIA_TYPE",
  },
  {
    name: "body over 1 MiB",
    headers: JSON_CT,
    body: push({ payload: "x".repeat(1_100_000) }),
    status: 413,
    code: "PAYLOAD_TOO_LARGE",
  },
  {
    name: "gzip bomb-ish body over the limit once inflated",
    headers: { ...JSON_CT, "content-encoding": "gzip" },
    body: gzipSync(push({ payload: "x".repeat(2_000_000) })),
    status: 413,
    code: "PAYLOAD_TOO_LARGE",
  },
  {
    name: "unknown content-encoding",
    headers: { ...JSON_CT, "content-encoding": "compress" },
    body: push({}),
    status: 415,
    code: "UNSUPPORTED_MEDIA_TYPE",
  },
  {
    name: "unsupported charset",
    headers: { "content-type": "application/json; charset=latin1" },
    body: push({}),
    status: 415,
    code: "UNSUPPORTED_MEDIA_TYPE",
  },
  { name: "JSON null", headers: JSON_CT, body: "null", status: 400, code: "VALIDATION_FAILED" },
  { name: "JSON array", headers: JSON_CT, body: "[]", status: 400, code: "VALIDATION_FAILED" },
  { name: "JSON string", headers: JSON_CT, body: '"push"', status: 400, code: "VALIDATION_FAILED" },
  { name: "empty object", headers: JSON_CT, body: "{}", status: 400, code: "VALIDATION_FAILED" },
  {
    name: "no payload",
    headers: JSON_CT,
    body: JSON.stringify({ userId: "h", event: "e" }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "payload",
  },
  {
    name: "body nested 65 deep",
    headers: JSON_CT,
    body: push({ payload: deep(64) }),
    status: 400,
    code: "VALIDATION_FAILED",
  },
  { name: "body nested 64 deep", headers: JSON_CT, body: push({ payload: deep(63) }), status: 202 },
  {
    name: "payload nested 100k deep",
    headers: JSON_CT,
    body: push({}).replace('"payload":1', `"payload":${deepText(100_000)}`),
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "__proto__ in the payload",
    headers: JSON_CT,
    body: push({}).replace('"payload":1', '"payload":{"__proto__":{"polluted":true}}'),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "payload.__proto__",
  },
  {
    name: "__proto__ at the top",
    headers: JSON_CT,
    body: push({}).replace("{", '{"__proto__":{"polluted":true},'),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "__proto__",
  },
  {
    name: "__proto__ deep in options",
    headers: JSON_CT,
    body: push({}).replace("{", '{"options":{"a":[{"__proto__":1}]},'),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "options.a.0.__proto__",
  },
  {
    name: "constructor.prototype is plain data",
    headers: JSON_CT,
    body: push({ payload: { constructor: { prototype: { polluted: true } } } }),
    status: 202,
  },
  {
    name: "too many userIds",
    headers: JSON_CT,
    body: JSON.stringify({
      userIds: Array.from({ length: 11 }, (_, i) => `u${i}`),
      event: "e",
      payload: 1,
    }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "userIds",
  },
  {
    name: "too many except",
    headers: JSON_CT,
    body: push({
      userId: undefined,
      broadcast: true,
      options: { except: Array.from({ length: 11 }, (_, i) => `u${i}`) },
    }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "options.except",
  },
  {
    name: "userId with a space",
    headers: JSON_CT,
    body: push({ userId: "a b" }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "userId",
  },
  {
    name: "userId of 129 characters",
    headers: JSON_CT,
    body: push({ userId: "u".repeat(129) }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "userId",
  },
  {
    name: "userId as a number",
    headers: JSON_CT,
    body: push({ userId: 5 }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "userId",
  },
  {
    name: "reserved event name",
    headers: JSON_CT,
    body: push({ event: "disconnect" }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "event",
  },
  {
    name: "event named __proto__",
    headers: JSON_CT,
    body: push({ event: "__proto__" }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "event",
  },
  {
    name: "event named constructor",
    headers: JSON_CT,
    body: push({ event: "constructor" }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "event",
  },
  {
    name: "event name of 129 characters",
    headers: JSON_CT,
    body: push({ event: "e".repeat(129) }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "event",
  },
  {
    name: "event name with markup",
    headers: JSON_CT,
    body: push({ event: "<script>" }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "event",
  },
  {
    name: "room with markup",
    headers: JSON_CT,
    body: push({ userId: undefined, room: "r<script>" }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "room",
  },
  {
    name: "room of 201 characters",
    headers: JSON_CT,
    body: push({ userId: undefined, room: "r".repeat(201) }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "room",
  },
  {
    name: "two targets",
    headers: JSON_CT,
    body: push({ room: "r" }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "target",
  },
  {
    name: "unknown field",
    headers: JSON_CT,
    body: push({ userid: "typo" }),
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "broadcast: false",
    headers: JSON_CT,
    body: push({ userId: undefined, broadcast: false }),
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "broadcast",
  },
  {
    name: "no API key",
    headers: { ...JSON_CT, authorization: "" },
    body: push({}),
    status: 401,
    code: "UNAUTHORIZED",
  },
  {
    name: "wrong API key",
    headers: { ...JSON_CT, authorization: "Bearer nope-nope-nope-nope" },
    body: push({}),
    status: 401,
    code: "UNAUTHORIZED",
  },
  {
    name: "API key in a Basic header",
    headers: { ...JSON_CT, authorization: `Basic ${TEST_API_KEY}` },
    body: push({}),
    status: 401,
    code: "UNAUTHORIZED",
  },
  { name: "GET on the push path", method: "GET", status: 405, code: "METHOD_NOT_ALLOWED" },
  {
    name: "unknown API path",
    method: "GET",
    path: "/api/../../etc/passwd",
    status: 404,
    code: "NOT_FOUND",
  },
  {
    name: "__proto__ in the query",
    method: "GET",
    path: "/api/rooms?__proto__[polluted]=1",
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "constructor in the query",
    method: "GET",
    path: "/api/rooms?constructor=1",
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "limit not a number",
    method: "GET",
    path: "/api/rooms?limit=1e9",
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "limit",
  },
  {
    name: "user path with a space",
    method: "GET",
    path: "/api/users/a%20b",
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "room path with markup",
    method: "GET",
    path: "/api/rooms/%3Cscript%3E",
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "revoke with __proto__",
    path: "/api/tokens/revoke",
    headers: JSON_CT,
    body: '{"__proto__":{"jti":"x"},"jti":"y"}',
    status: 400,
    code: "VALIDATION_FAILED",
    detail: "__proto__",
  },
  {
    name: "revoke in milliseconds",
    path: "/api/tokens/revoke",
    headers: JSON_CT,
    body: JSON.stringify({ userId: "h", issuedBefore: Date.now() }),
    status: 400,
    code: "VALIDATION_FAILED",
  },
];

/** Raw HTTP, so that bodies and headers reach the server exactly as written. */
function send(
  c: HttpCase,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {
      authorization: `Bearer ${TEST_API_KEY}`,
      ...c.headers,
    };
    if (headers.authorization === "") delete headers.authorization;
    const req = http.request(
      {
        host: "127.0.0.1",
        port: server.apiPort,
        method: c.method ?? "POST",
        path: c.path ?? "/api/push",
        headers,
        agent: false,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end(c.body);
  });
}

describe(`hostile HTTP (${HTTP_CASES.length} cases)`, () => {
  it.each(HTTP_CASES)("$name → $status $code", async (c) => {
    const res = await send(c);
    expect(res.status).toBe(c.status);
    // Every answer carries the security headers and a request id; none echoes a body back.
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.headers["x-frame-options"]).toBe("DENY");
    expect(res.headers["content-security-policy"]).toBe(
      "default-src 'none'; frame-ancestors 'none'",
    );
    expect(res.headers["x-request-id"]).toBeTruthy();
    if (c.code) {
      const body = JSON.parse(res.body) as {
        error: { code: string; details?: { path: string }[]; requestId: string };
      };
      expect(body.error.code).toBe(c.code);
      expect(body.error.requestId).toBe(res.headers["x-request-id"]);
      if (c.detail) expect(body.error.details?.map((d) => d.path)).toContain(c.detail);
      expect(res.body).not.toContain("<script>");
    }
  });

  it("an insane x-request-id is replaced, a sane one kept", async () => {
    const insane = await send({
      name: "",
      method: "GET",
      path: "/api/status",
      headers: { "x-request-id": "a b<c>" },
      status: 200,
    });
    expect(insane.headers["x-request-id"]).not.toBe("a b<c>");
    const sane = await send({
      name: "",
      method: "GET",
      path: "/api/status",
      headers: { "x-request-id": "req-42" },
      status: 200,
    });
    expect(sane.headers["x-request-id"]).toBe("req-42");
  });
});

type Expect = { ack: string } | { ok: true } | { hangUp: true };
interface SocketCase {
  name: string;
  /** A registered socket by default; `false` for one that has not registered. */
  registered?: boolean;
  /** Either an event with arguments (sent with an ack), or a raw frame. */
  event?: [unknown, ...unknown[]];
  raw?: string;
  rawAck?: string;
  expect: Expect;
}

const SOCKET_CASES: SocketCase[] = [
  {
    name: "any event before register",
    registered: false,
    event: ["chat", {}],
    expect: { ack: "NOT_REGISTERED" },
  },
  {
    name: "register with a userId object",
    registered: false,
    event: ["register", { userId: { $ne: 1 } }],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "register with no payload",
    registered: false,
    event: ["register"],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "register with two arguments",
    registered: false,
    event: ["register", { userId: "h" }, 2],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "room:join with an array",
    event: ["room:join", ["chat:1"]],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "register with bad characters",
    registered: false,
    event: ["register", { userId: "h<script>" }],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "register as someone else",
    registered: false,
    event: ["register", { userId: "admin" }],
    expect: { ack: "FORBIDDEN" },
  },
  {
    name: "register with __proto__",
    registered: false,
    event: ["register", JSON.parse('{"__proto__":{"userId":"h"}}')],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "event name of 129 characters",
    event: ["e".repeat(129), {}],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  { name: "event name with a space", event: ["a b", {}], expect: { ack: "INVALID_PAYLOAD" } },
  { name: "event name with markup", event: ["<img>", {}], expect: { ack: "INVALID_PAYLOAD" } },
  { name: "event named __proto__", event: ["__proto__", {}], expect: { ack: "INVALID_PAYLOAD" } },
  {
    name: "event named constructor",
    event: ["constructor", {}],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  { name: "numeric event name", event: [42, {}], expect: { ack: "INVALID_PAYLOAD" } },
  {
    name: "argument nested 65 deep",
    event: ["chat", deep(65)],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "argument nested 64 deep",
    event: ["chat", deep(64)],
    expect: { ack: "FORWARDING_DISABLED" },
  },
  {
    name: "payload nested 5,000 deep (raw)",
    rawAck: `["chat",${deepText(5_000)}]`,
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "__proto__ in the payload",
    rawAck: '["chat",{"a":{"__proto__":{"polluted":true}}}]',
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "__proto__ in a room request",
    rawAck: '["room:join",{"__proto__":{"room":"x"}}]',
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "constructor.prototype is plain data",
    event: ["chat", { constructor: { prototype: { polluted: true } } }],
    expect: { ack: "FORWARDING_DISABLED" },
  },
  {
    name: "room:join without a room",
    event: ["room:join", {}],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "room:join with a number",
    event: ["room:join", { room: 42 }],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "room:join with a space",
    event: ["room:join", { room: "a b" }],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "room:join of 201 characters",
    event: ["room:join", { room: "r".repeat(201) }],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "room:join not in the claim",
    event: ["room:join", { room: "admin" }],
    expect: { ack: "FORBIDDEN" },
  },
  // Room names are opaque strings: "chat:../admin" is a room under chat:*, not "admin".
  {
    name: "room:join with path tricks",
    event: ["room:join", { room: "chat:../admin" }],
    expect: { ok: true },
  },
  {
    name: "room:join of a user room",
    event: ["room:join", { room: "user:someone-else" }],
    expect: { ack: "FORBIDDEN" },
  },
  {
    name: "room:join allowed by the claim",
    event: ["room:join", { room: "chat:1" }],
    expect: { ok: true },
  },
  // Presence and signals: this server keeps no presence or signal rooms.
  {
    name: "presence:list of an array",
    event: ["presence:list", { room: ["chat:1"] }],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "presence:list where presence is not kept",
    event: ["presence:list", { room: "chat:1" }],
    expect: { ack: "FORBIDDEN" },
  },
  {
    name: "room:signal without a room",
    event: ["room:signal", { name: "typing", data: 1 }],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "room:signal where signals are not relayed",
    event: ["room:signal", { room: "chat:1", name: "typing" }],
    expect: { ack: "FORBIDDEN" },
  },
  {
    name: "auth:refresh with an object token",
    event: ["auth:refresh", { token: {} }],
    expect: { ack: "INVALID_PAYLOAD" },
  },
  {
    name: "auth:refresh with garbage",
    event: ["auth:refresh", { token: "x".repeat(9_000) }],
    expect: { ack: "AUTH_INVALID" },
  },
  {
    name: "auth:refresh with alg none",
    event: ["auth:refresh", { token: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJoIn0." }],
    expect: { ack: "AUTH_INVALID" },
  },
  { name: "reserved event name (raw)", raw: '42["disconnect"]', expect: { hangUp: true } },
  { name: "truncated packet (raw)", raw: '42["chat",', expect: { hangUp: true } },
  { name: "event packet that is a string (raw)", raw: '42"chat"', expect: { hangUp: true } },
  { name: "unknown packet type (raw)", raw: "9hello", expect: { hangUp: true } },
  {
    name: "absurd attachment count (raw)",
    raw: '45999999-["chat",{"_placeholder":true,"num":0}]',
    expect: { hangUp: true },
  },
  {
    name: "binary frame with no packet waiting for it (raw)",
    raw: "\u0000binary",
    expect: { hangUp: true },
  },
  {
    name: "message over MAX_PAYLOAD_BYTES (raw)",
    raw: `42["chat","${"x".repeat(70_000)}"]`,
    expect: { hangUp: true },
  },
];

describe(`hostile socket events and frames (${SOCKET_CASES.length} cases)`, () => {
  it.each(SOCKET_CASES)("$name", async (c) => {
    const token = await signToken("h", { rooms: ["chat:*"] });
    const { s, answer } = await RawSocket.connect(server.publicUrl, { token });
    try {
      expect(answer.startsWith("40{")).toBe(true);
      if (c.registered !== false) {
        expect(await s.emit("register", { userId: "h" })).toMatchObject({ ok: true });
      }
      let reply: unknown;
      if (c.event) reply = await s.emit(...c.event);
      else if (c.rawAck) reply = await s.emitRaw(c.rawAck);
      else if (c.raw) s.send(c.raw.startsWith("\u0000") ? Buffer.from(c.raw) : c.raw);

      if ("hangUp" in c.expect) {
        await s.closed;
      } else if ("ok" in c.expect) {
        expect(reply).toMatchObject({ ok: true });
      } else {
        expect(reply).toMatchObject({ ok: false, error: { code: c.expect.ack } });
        // The socket survives a refused event.
        const next =
          c.registered === false
            ? await s.emit("register", { userId: "h" })
            : await s.emit("room:join", { room: "chat:ok" });
        expect(next).toMatchObject({ ok: true });
      }
    } finally {
      s.close();
    }
  });
});

describe("hostile handshakes", () => {
  it.each([
    ["no auth object", undefined, "AUTH_MISSING"],
    ["token as an object", { token: { alg: "none" } }, "AUTH_MISSING"],
    ["empty token", { token: "" }, "AUTH_MISSING"],
    ["token of 10 KB", { token: "x".repeat(10_000) }, "AUTH_INVALID"],
    ["alg none token", { token: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJoIn0." }, "AUTH_INVALID"],
  ])("%s", async (_name, auth, code) => {
    const { s, answer } = await RawSocket.connect(server.publicUrl, auth ?? {});
    try {
      expect(JSON.parse(answer.slice(2))).toEqual({ message: "unauthorized", data: { code } });
    } finally {
      s.close();
    }
  });

  it("a namespace that does not exist is refused", async () => {
    const s = await RawSocket.open(server.publicUrl);
    try {
      s.send(`40/admin,${JSON.stringify({ token: await signToken("h") })}`);
      const answer = await s.next((f) => f.startsWith("44/admin,"));
      expect(JSON.parse(answer.slice("44/admin,".length))).toEqual({
        message: "Invalid namespace",
      });
    } finally {
      s.close();
    }
  });

  it("an Origin outside CORS_ORIGINS cannot open a websocket or a polling session; an allowed one can", async () => {
    await expect(
      RawSocket.open(server.publicUrl, { origin: "http://evil.example" }),
    ).rejects.toThrow(/HTTP 400/);
    const polling = await fetch(`${server.publicUrl}/socket.io/?EIO=4&transport=polling`, {
      headers: { origin: "http://evil.example" },
    });
    expect(polling.status).toBe(403);
    const ok = await RawSocket.open(server.publicUrl, { origin: "http://allowed.example" });
    ok.close();
  });

  it.each(["/health", "/", "/nope"])("security headers on the public port: %s", async (path) => {
    const res = await fetch(`${server.publicUrl}${path}`);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
  });
});

describe("after the battery", () => {
  it("nothing reached Object.prototype or Array.prototype in either worker", async () => {
    const slots = new Set<number>();
    for (let i = 0; i < 6; i++) {
      const res = await send({ name: "", method: "GET", path: "/api/test/prototype", status: 200 });
      const body = JSON.parse(res.body) as { slot: number; added: string[]; arrayAdded: string[] };
      expect(body.added).toEqual([]);
      expect(body.arrayAdded).toEqual([]);
      slots.add(body.slot);
    }
    expect(slots.size).toBe(2);
    console.log(
      `[figures] hostile battery: ${HTTP_CASES.length + 1} HTTP cases, ${SOCKET_CASES.length} socket ` +
        "cases, 7 handshake cases, 3 public-port header checks; no prototype pollution in either worker",
    );
  });
});
