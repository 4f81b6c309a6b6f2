import http from "node:http";
import net from "node:net";
import { createConfig, lintFromString } from "@redocly/openapi-core";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/shared/config.js";
import { createAnswerSchemas } from "../src/worker/http/answer-schemas.js";
import { createSchemas } from "../src/worker/http/schemas.js";
import { connectRegistered, emitAck, nextEvent } from "./support/client.js";
import { signToken, TEST_API_KEY } from "./support/fixtures.js";
import { useInProcessServer } from "./support/in-process.js";
import { testEnv, useServer } from "./support/server.js";

const server = useInProcessServer({ env: { PUSH_BODY_LIMIT_BYTES: "65536" } });

async function expectError(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  const body = await res.json();
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe("string");
  expect(new Date(body.error.timestamp).toISOString()).toBe(body.error.timestamp);
  expect(body.error.requestId).toBe(res.headers.get("x-request-id"));
  return body.error;
}

describe("authentication and request ids", () => {
  it("401 without a key and with a wrong key", async () => {
    await expectError(await fetch(`${server.apiUrl}/api/status`), 401, "UNAUTHORIZED");
    await expectError(
      await fetch(`${server.apiUrl}/api/status`, {
        headers: { authorization: "Bearer nope-nope-nope-nope" },
      }),
      401,
      "UNAUTHORIZED",
    );
  });
  it("reuses a sane x-request-id and replaces an insane one", async () => {
    const r1 = await server.api("GET", "/api/status", undefined, { "x-request-id": "req-123" });
    expect(r1.headers.get("x-request-id")).toBe("req-123");
    const r2 = await server.api("GET", "/api/status", undefined, {
      "x-request-id": "bad id <script>",
    });
    expect(r2.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe("push targets", () => {
  it("userId, userIds, room, rooms, broadcast, except and volatile", async () => {
    const names = ["p-a", "p-b", "p-c"];
    const [a, b, c] = await Promise.all(
      names.map(async (u) =>
        connectRegistered(server.publicUrl, await signToken(u, { rooms: ["r:*"] }), u),
      ),
    );
    await emitAck(a!, "room:join", { room: "r:1" });
    await emitAck(b!, "room:join", { room: "r:1" });
    await emitAck(c!, "room:join", { room: "r:2" });

    const push = async (body: object) => {
      const res = await server.api("POST", "/api/push", body);
      expect(res.status).toBe(202);
      const json = await res.json();
      expect(json.id).toMatch(/^[0-9a-f-]{36}$/);
      return json;
    };
    const collect = (event: string) => {
      const got: string[] = [];
      for (const [i, s] of [a, b, c].entries()) s!.on(event, () => got.push(names[i]!));
      return got;
    };
    const settle = () => new Promise((r) => setTimeout(r, 300));

    let got = collect("e1");
    expect((await push({ userId: "p-a", event: "e1", payload: 1 })).target).toBe("user");
    await settle();
    expect(got).toEqual(["p-a"]);

    got = collect("e2");
    await push({ userIds: ["p-a", "p-c"], event: "e2", payload: 1 });
    await settle();
    expect(got.sort()).toEqual(["p-a", "p-c"]);

    got = collect("e3");
    await push({ room: "r:1", event: "e3", payload: 1 });
    await settle();
    expect(got.sort()).toEqual(["p-a", "p-b"]);

    got = collect("e4");
    await push({ rooms: ["r:1", "r:2"], event: "e4", payload: 1, options: { except: ["p-b"] } });
    await settle();
    expect(got.sort()).toEqual(["p-a", "p-c"]);

    got = collect("e5");
    await push({ broadcast: true, event: "e5", payload: 1, options: { volatile: true } });
    await settle();
    expect(got.sort()).toEqual(names);
  });

  it("delivers payloads unchanged: nested JSON, unicode, null, big numbers, 40 KB strings", async () => {
    const s = await connectRegistered(server.publicUrl, await signToken("payloads"), "payloads");
    const payloads = [
      { deep: { a: [1, { b: [null, true, false, "x"] }] } },
      'héllo wörld ✓ 日本語 🎉 \u0000 "quoted" \\ backslash',
      null,
      0,
      -1.5e300,
      [],
      "x".repeat(40_000),
    ];
    for (const payload of payloads) {
      const got = nextEvent(s, "data");
      expect(
        (await server.api("POST", "/api/push", { userId: "payloads", event: "data", payload }))
          .status,
      ).toBe(202);
      expect(await got).toEqual(payload);
    }
  });
});

describe("validation errors", () => {
  const cases: [string, unknown, string[]][] = [
    ["no payload", { userId: "u", event: "e" }, ["payload"]],
    ["no target", { event: "e", payload: 1 }, ["target"]],
    ["two targets", { userId: "u", room: "r", event: "e", payload: 1 }, ["target"]],
    ["unknown field", { userId: "u", event: "e", payload: 1, extra: 1 }, ["(body)"]],
    ["bad userId", { userId: "a b", event: "e", payload: 1 }, ["userId"]],
    ["reserved event", { userId: "u", event: "disconnect", payload: 1 }, ["event"]],
    ["empty userIds", { userIds: [], event: "e", payload: 1 }, ["userIds"]],
    [
      "bad option",
      { userId: "u", event: "e", payload: 1, options: { volatile: "yes" } },
      ["options.volatile"],
    ],
    ["unknown option", { userId: "u", event: "e", payload: 1, options: { nope: 1 } }, ["options"]],
    ["a JSON array", [1, 2], ["(body)"]],
    [
      "__proto__ key",
      JSON.parse('{"userId":"u","event":"e","payload":1,"__proto__":{"polluted":1}}'),
      // Refused by the body shape check before the schema (src/worker/protection).
      ["__proto__"],
    ],
  ];
  for (const [name, body, paths] of cases) {
    it(`${name}: 400 with details naming ${paths.join(", ")}`, async () => {
      const err = await expectError(
        await server.api("POST", "/api/push", body),
        400,
        "VALIDATION_FAILED",
      );
      const got = (err.details as { path: string }[]).map((d) => d.path);
      for (const p of paths) expect(got).toContain(p);
      expect(({} as { polluted?: number }).polluted).toBeUndefined();
    });
  }
  it("invalid JSON: 400", async () => {
    await expectError(await server.api("POST", "/api/push", "{not json"), 400, "VALIDATION_FAILED");
  });
  it("an empty body: 400", async () => {
    await expectError(
      await server.api("POST", "/api/push", undefined, { "content-type": "application/json" }),
      400,
      "VALIDATION_FAILED",
    );
  });
  it("not JSON: 415", async () => {
    await expectError(
      await server.api("POST", "/api/push", "userId=u", {
        "content-type": "application/x-www-form-urlencoded",
      }),
      415,
      "UNSUPPORTED_MEDIA_TYPE",
    );
  });
  it("the push fast path answers exactly like the express route", async () => {
    // `POST /api/push` is handled outside express (src/worker/http/fast-push.ts);
    // a query string sends the same request through express instead.
    const deep = { userId: "u", event: "e", payload: {} as Record<string, unknown> };
    let at = deep.payload;
    for (let i = 0; i < 80; i++) at = at["a"] = {};
    const bodies: unknown[] = [
      { userId: "nobody-here", event: "e", payload: { n: 1 } },
      "{not json",
      "\uFEFF[1]",
      deep,
      { userId: "a b", event: "disconnect" },
      JSON.parse('{"userId":"u","event":"e","payload":1,"__proto__":{"x":1}}'),
      { userId: "u", event: "e", payload: 1, options: { offline: "store", ttlSeconds: 5 } },
    ];
    const headerNames = (res: Response) => {
      const names: string[] = [];
      res.headers.forEach((_v, h) => {
        if (h !== "date" && h !== "keep-alive") names.push(h);
      });
      return names.sort();
    };
    for (const body of bodies) {
      const [fast, viaExpress] = await Promise.all(
        ["/api/push", "/api/push?via=express"].map((path) => server.api("POST", path, body)),
      );
      expect(fast!.status).toBe(viaExpress!.status);
      expect(headerNames(fast!)).toEqual(headerNames(viaExpress!));
      const [a, b] = await Promise.all([fast!.json(), viaExpress!.json()]);
      if (fast!.status === 202) {
        expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
        expect(a.target).toBe(b.target);
      } else {
        expect(a.error.code).toBe(b.error.code);
        expect(a.error.message).toBe(b.error.message);
        expect(a.error.details).toEqual(b.error.details);
      }
    }
  });
  it("unknown path: 404; wrong method: 405", async () => {
    await expectError(await server.api("GET", "/api/nothing"), 404, "NOT_FOUND");
    await expectError(await server.api("GET", "/api/push"), 405, "METHOD_NOT_ALLOWED");
    await expectError(await server.api("DELETE", "/api/status"), 405, "METHOD_NOT_ALLOWED");
  });
  it("a body over the limit gets 413 on a keep-alive connection that stays usable", async () => {
    const body = JSON.stringify({ userId: "u", event: "e", payload: "x".repeat(70_000) });
    const sock = net.connect(server.apiPort, "127.0.0.1");
    await new Promise((r) => sock.once("connect", r));
    let data = "";
    sock.on("data", (c) => (data += c.toString()));
    const head = (len: number, path: string, method = "POST") =>
      `${method} ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_API_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${len}\r\nConnection: keep-alive\r\n\r\n`;
    sock.write(head(Buffer.byteLength(body), "/api/push") + body);
    await new Promise<void>((resolve) => {
      const check = () => (data.includes("PAYLOAD_TOO_LARGE") ? resolve() : setTimeout(check, 20));
      check();
    });
    expect(data).toMatch(/^HTTP\/1\.1 413/);
    expect(data.toLowerCase()).not.toContain("connection: close");
    data = "";
    sock.write(head(0, "/api/status", "GET"));
    await new Promise<void>((resolve) => {
      const check = () => (data.includes('"connections"') ? resolve() : setTimeout(check, 20));
      check();
    });
    expect(data).toMatch(/^HTTP\/1\.1 200/);
    sock.destroy();
  });
});

describe("rooms and users", () => {
  it("membership, user lookup, disconnect", async () => {
    const s1 = await connectRegistered(server.publicUrl, await signToken("m-1"), "m-1", {
      reconnection: false,
    });
    const s2 = await connectRegistered(server.publicUrl, await signToken("m-1"), "m-1", {
      reconnection: false,
    });
    let res = await server.api("PUT", "/api/rooms/vip/members/m-1");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ room: "vip", userId: "m-1", sockets: 2 });

    const user = await (await server.api("GET", "/api/users/m-1")).json();
    expect(user).toMatchObject({
      userId: "m-1",
      online: true,
      sockets: 2,
      rooms: ["user:m-1", "vip"],
    });
    const rooms = await (await server.api("GET", "/api/rooms?prefix=vi")).json();
    expect(rooms.rooms).toEqual([{ room: "vip", sockets: 2, users: 1 }]);

    const got = Promise.all([nextEvent(s1, "vip-news"), nextEvent(s2, "vip-news")]);
    await server.api("POST", "/api/push", { room: "vip", event: "vip-news", payload: "hi" });
    expect(await got).toEqual(["hi", "hi"]);

    res = await server.api("DELETE", "/api/rooms/vip/members/m-1");
    expect(await res.json()).toMatchObject({ sockets: 2 });
    await expectError(await server.api("GET", "/api/rooms/vip"), 404, "NOT_FOUND");
    await expectError(await server.api("PUT", "/api/rooms/vip/members/nobody"), 404, "NOT_FOUND");
    await expectError(
      await server.api("PUT", "/api/rooms/bad%20room/members/m-1"),
      400,
      "VALIDATION_FAILED",
    );

    const gone = Promise.all([nextEvent(s1, "disconnect"), nextEvent(s2, "disconnect")]);
    const notice = nextEvent(s1, "server:disconnect");
    res = await server.api("POST", "/api/users/m-1/disconnect");
    expect(await res.json()).toMatchObject({ userId: "m-1", disconnected: 2 });
    expect(await notice).toMatchObject({ code: "KICKED" });
    await gone;
    expect(await (await server.api("GET", "/api/users/m-1")).json()).toMatchObject({
      online: false,
      sockets: 0,
    });
  });
});

describe("OpenAPI", () => {
  interface Doc {
    openapi: string;
    servers: { url: string }[];
    paths: Record<string, Record<string, Operation>>;
    components: { schemas: Record<string, Record<string, unknown>> };
  }
  interface Operation {
    operationId: string;
    responses: Record<string, { $ref?: string; content?: unknown }>;
  }
  const getDoc = async () => (await (await server.api("GET", "/api/openapi.json")).json()) as Doc;
  const operations = (doc: Doc) =>
    Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops).map(([method, op]) => ({ path, method, op })),
    );

  it("passes Redocly's recommended-strict lint: $refs resolve, servers, operationIds", async () => {
    const doc = await getDoc();
    const config = await createConfig({ extends: ["recommended-strict"] });
    const problems = await lintFromString({
      source: JSON.stringify(doc),
      absoluteRef: `${server.apiUrl}/api/openapi.json`,
      config,
    });
    expect(problems.map((p) => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`)).toEqual(
      [],
    );
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.servers.length).toBeGreaterThan(0);
    // No schema keeps zod's own $defs: every shared schema is a component.
    expect(JSON.stringify(doc)).not.toContain("$defs");
  });

  it("lists every route the server has, each with a typed 2xx body", async () => {
    const doc = await getDoc();
    expect(Object.keys(doc.paths).sort()).toEqual(
      [
        "/api/admin/restart-workers",
        "/api/openapi.json",
        "/api/push",
        "/api/push/batch",
        "/api/rooms",
        "/api/rooms/{room}",
        "/api/rooms/{room}/members/{userId}",
        "/api/status",
        "/api/tokens/revoke",
        "/api/users/{userId}",
        "/api/users/{userId}/disconnect",
      ].sort(),
    );
    const ids = operations(doc).map((o) => o.op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { path, method, op } of operations(doc)) {
      const ok = Object.entries(op.responses).filter(([status]) => status.startsWith("2"));
      expect(ok, `${method} ${path}`).toHaveLength(1);
      const schema = JSON.stringify(ok[0]![1].content);
      expect(schema, `${method} ${path}`).toMatch(/"\$ref":"#\/components\/schemas\/\w+"/);
    }
    const push = doc.components.schemas["PushRequest"]!;
    expect(push["additionalProperties"]).toBe(false);
    expect(JSON.stringify(push)).toContain("#/components/schemas/UserId");
  });

  it("declares what each route really answers: 401, 405 with Allow, 413, 415, 400", async () => {
    const doc = await getDoc();
    const concrete = (path: string) =>
      path.replace("{room}", "r:doc").replace("{userId}", "doc-user");
    // node:http, not fetch: fetch refuses a body on GET, and the server must answer one.
    const answers = (
      method: string,
      path: string,
      init: { headers?: Record<string, string>; body?: string },
    ) =>
      new Promise<{ status: number; allow: string | undefined }>((resolve, reject) => {
        const req = http.request(
          `${server.apiUrl}${concrete(path)}`,
          {
            method: method.toUpperCase(),
            // Node sends a GET's body without a length unless told.
            headers: { ...init.headers, "content-length": Buffer.byteLength(init.body ?? "") },
          },
          (res) => {
            res.resume();
            res.on("end", () => resolve({ status: res.statusCode!, allow: res.headers.allow }));
          },
        );
        req.on("error", reject);
        req.end(init.body);
      });
    const auth = { authorization: `Bearer ${TEST_API_KEY}` };
    for (const { path, method, op } of operations(doc)) {
      const where = `${method} ${path}`;
      const declared = (status: number) => expect(op.responses[status], where).toBeDefined();
      const expectStatus = (res: { status: number }, status: number) => {
        expect(res.status, where).toBe(status);
        declared(status);
      };
      expectStatus(await answers(method, path, {}), 401);
      expectStatus(
        await answers(method, path, {
          headers: { ...auth, "content-type": "text/plain" },
          body: "hello",
        }),
        415,
      );
      expectStatus(
        await answers(method, path, {
          headers: { ...auth, "content-type": "application/json" },
          body: JSON.stringify({ pad: "x".repeat(70_000) }),
        }),
        413,
      );
      expectStatus(
        await answers(method, path, {
          headers: { ...auth, "content-type": "application/json" },
          body: "{not json",
        }),
        400,
      );
      const other = await answers("PATCH", path, { headers: auth });
      expectStatus(other, 405);
      const methods = Object.keys(doc.paths[path]!).map((m) => m.toUpperCase());
      if (methods.includes("GET")) methods.push("HEAD");
      expect(other.allow, where).toBe(methods.sort().join(", "));
    }
    // The push routes are the rate-limited and shed ones: 429 and 503 with Retry-After.
    for (const path of ["/api/push", "/api/push/batch"]) {
      const responses = doc.paths[path]!["post"]!.responses;
      expect(JSON.stringify(responses["429"])).toContain("RateLimited");
      expect(JSON.stringify(responses["503"])).toContain("RetryAfter");
      expect(responses["409"] !== undefined).toBe(path === "/api/push");
    }
  });

  it("answers with the bodies it documents", async () => {
    const s = createSchemas(loadConfig(testEnv({ workers: 1 })));
    const a = createAnswerSchemas(s);
    await connectRegistered(
      server.publicUrl,
      await signToken("doc-a", { rooms: ["d:*"] }),
      "doc-a",
    );
    const body = async (res: Response, status: number) => {
      expect(res.status).toBe(status);
      return res.json();
    };
    a.pushAnswer.parse(
      await body(
        await server.api("POST", "/api/push", { userId: "doc-a", event: "e", payload: 1 }),
        202,
      ),
    );
    a.pushAnswer.parse(
      await body(
        await server.api("POST", "/api/push", {
          userId: "doc-a",
          event: "e",
          payload: 1,
          options: { ackTimeoutMs: 50, idempotencyKey: "doc-key", offline: "store" },
        }),
        202,
      ),
    );
    a.membership.parse(await body(await server.api("PUT", "/api/rooms/d:1/members/doc-a"), 200));
    a.roomsPage.parse(await body(await server.api("GET", "/api/rooms?limit=1"), 200));
    a.roomMembers.parse(await body(await server.api("GET", "/api/rooms/d:1"), 200));
    a.userState.parse(await body(await server.api("GET", "/api/users/doc-a"), 200));
    const status = a.hostStatus.parse(await body(await server.api("GET", "/api/status"), 200));
    expect(status.workers.length).toBeGreaterThan(0);
    a.openApiDocument.parse(await body(await server.api("GET", "/api/openapi.json"), 200));
    a.error.parse(await body(await server.api("GET", "/api/rooms/d:none"), 404));
    a.userDisconnected.parse(
      await body(await server.api("POST", "/api/users/doc-a/disconnect"), 200),
    );
  });
});

// The primary's answers, on a forked cluster.
describe("health", () => {
  const cluster = useServer({ workers: 2 });
  it("answers /health on both ports and /ready on the API port", async () => {
    expect((await fetch(`${cluster.publicUrl}/health`)).status).toBe(200);
    expect((await fetch(`${cluster.apiUrl}/health`)).status).toBe(200);
    const ready = await fetch(`${cluster.apiUrl}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: "ready", workers: { ready: 2, total: 2 } });
  });
});
