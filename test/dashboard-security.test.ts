import http from "node:http";
import { describe, expect, it } from "vitest";
import { createDashboardSession } from "../src/primary/dashboard/session.js";
import { TEST_DASHBOARD_TOKEN } from "./support/fixtures.js";
import { useInProcessServer } from "./support/in-process.js";
import { type RunningServer, useServer, workerPids } from "./support/server.js";
import { waitFor } from "./support/wait.js";

// The dashboard's defences against guessing and stolen cookies (CONTRACT
// "Security defaults"): wrong tokens count per client address, whichever
// way they come (form, ?token=, bearer); a locked-out address gets 429 even
// with the right token while every other address gets in; X-Forwarded-For
// names the client only from TRUSTED_PROXIES; logout ends the session on the
// server. Requests leave from different loopback addresses (127.0.0.2, …)
// so that the server sees different TCP peers. The dashboard is the
// primary's: the one-process layer has it, behind the primary's balancer;
// only a restart of every worker needs the cluster.

type Server = Pick<RunningServer, "apiUrl" | "api" | "output">;

const WRONG = "wrong-dashboard-token-0000";
const MAX_FAILURES = 20; // DASHBOARD_MAX_FAILED_LOGINS's default

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

interface Send {
  from?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

/** One request on a connection of its own, from the loopback address `from`. */
function send(server: Server, path: string, opts: Send = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${server.apiUrl}${path}`,
      {
        method: opts.method ?? "GET",
        agent: false,
        localAddress: opts.from ?? "127.0.0.1",
        headers: { connection: "close", ...opts.headers },
        timeout: 10_000,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${path}: no answer`)));
    req.on("error", reject);
    req.end(opts.body);
  });
}

type Way = "form" | "query" | "bearer-page" | "bearer-api" | "bearer-feed";
const WAYS: Way[] = ["form", "query", "bearer-api", "bearer-feed", "bearer-page"];

/** Presents `token` one way; the feed is only ever given a wrong token (a right one streams). */
function present(
  server: Server,
  way: Way,
  token: string,
  opts: { from?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const bearer = { ...opts.headers, authorization: `Bearer ${token}` };
  switch (way) {
    case "form":
      return send(server, "/dashboard/login", {
        ...opts,
        method: "POST",
        headers: { ...opts.headers, "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token }).toString(),
      });
    case "query":
      return send(server, `/dashboard?token=${encodeURIComponent(token)}`, opts);
    case "bearer-page":
      return send(server, "/dashboard", { ...opts, headers: bearer });
    case "bearer-api":
      return send(server, "/dashboard/api/rooms", { ...opts, headers: bearer });
    case "bearer-feed":
      return send(server, "/dashboard/api/feed", { ...opts, headers: bearer });
  }
}

const isApi = (way: Way) => way === "bearer-api" || way === "bearer-feed";

/** A 429 in the right form for the route: JSON RATE_LIMITED or the login page, with Retry-After. */
function expectLockedOut(a: Answer, way: Way, lockoutS = 600): void {
  expect(a.status, `${way}: ${a.text.slice(0, 200)}`).toBe(429);
  const retryAfter = Number(a.headers["retry-after"]);
  expect(retryAfter).toBeGreaterThan(0);
  expect(retryAfter).toBeLessThanOrEqual(lockoutS);
  expect(a.headers["set-cookie"]).toBeUndefined();
  if (isApi(way)) {
    const body = JSON.parse(a.text) as { error: { code: string; requestId: string } };
    expect(body.error.code).toBe("RATE_LIMITED");
    expect(body.error.requestId).toBeTruthy();
  } else {
    expect(a.headers["content-type"]).toMatch(/^text\/html/);
    expect(a.text).toContain('action="/dashboard/login"');
    expect(a.text).toContain("Too many failed attempts");
    expect(a.text).not.toContain("data-metric");
  }
}

/** `n` wrong tokens, cycling through every way; all but the last must be plain 401s. */
async function fail(
  server: Server,
  n: number,
  opts: { from?: string; headers?: (i: number) => Record<string, string> } = {},
): Promise<Answer[]> {
  const answers: Answer[] = [];
  for (let i = 0; i < n; i++) {
    const way = WAYS[i % WAYS.length]!;
    const a = await present(server, way, WRONG, {
      ...(opts.from ? { from: opts.from } : {}),
      ...(opts.headers ? { headers: opts.headers(i) } : {}),
    });
    answers.push(a);
  }
  return answers;
}

async function login(server: Server, from?: string): Promise<string> {
  const a = await present(server, "form", TEST_DASHBOARD_TOKEN, from ? { from } : {});
  expect(a.status).toBe(303);
  const cookie = String(a.headers["set-cookie"]).split(";")[0]!;
  expect(cookie).toMatch(/^ss_dashboard=[^;\s]{20,}$/);
  return cookie;
}

describe("dashboard lockout per client address", () => {
  const server = useInProcessServer();

  it("locks out the guessing address after 20 wrong tokens (form, ?token=, bearer), even for the right token, and no one else", async () => {
    const answers = await fail(server, MAX_FAILURES, { from: "127.0.0.2" });
    for (const [i, a] of answers.slice(0, -1).entries()) {
      expect(a.status, `attempt ${i + 1}`).toBe(401);
    }
    // The failure that reaches the limit is already answered 429.
    expectLockedOut(answers.at(-1)!, WAYS[(MAX_FAILURES - 1) % WAYS.length]!);

    // The right token from the locked address: 429 every way.
    for (const way of ["form", "query", "bearer-api", "bearer-page"] as const) {
      expectLockedOut(await present(server, way, TEST_DASHBOARD_TOKEN, { from: "127.0.0.2" }), way);
    }
    expectLockedOut(
      await present(server, "bearer-feed", WRONG, { from: "127.0.0.2" }),
      "bearer-feed",
    );

    // Another address is not affected: it logs in, and bearer requests work.
    const cookie = await login(server, "127.0.0.3");
    const rooms = await send(server, "/dashboard/api/rooms", {
      from: "127.0.0.3",
      headers: { cookie },
    });
    expect(rooms.status).toBe(200);
    const bearer = await present(server, "bearer-api", TEST_DASHBOARD_TOKEN, { from: "127.0.0.3" });
    expect(bearer.status).toBe(200);
    expect(JSON.parse(bearer.text)).toHaveProperty("rooms");
    expect(
      (await present(server, "query", TEST_DASHBOARD_TOKEN, { from: "127.0.0.3" })).status,
    ).toBe(303);
    // …and its own wrong token is a plain 401, not someone else's lockout.
    expect((await present(server, "bearer-api", WRONG, { from: "127.0.0.3" })).status).toBe(401);

    // The token never appears in what the server logs.
    expect(server.output()).not.toContain(TEST_DASHBOARD_TOKEN);
    expect(server.output()).not.toContain(cookie.split("=")[1]!);
  });

  it("ignores X-Forwarded-For from a peer that is not a trusted proxy: a forged one does not escape a lockout", async () => {
    const from = "127.0.0.4";
    const forged = (i: number) => ({ "x-forwarded-for": `198.51.100.${i + 1}` });
    const answers = await fail(server, MAX_FAILURES, { from, headers: forged });
    expect(answers.slice(0, -1).map((a) => a.status)).toEqual(Array(MAX_FAILURES - 1).fill(401));
    expect(answers.at(-1)!.status).toBe(429);
    for (const way of ["form", "bearer-api"] as const) {
      const a = await present(server, way, TEST_DASHBOARD_TOKEN, {
        from,
        headers: { "x-forwarded-for": "198.51.100.200" },
      });
      expectLockedOut(a, way);
    }
  });
});

describe("dashboard lockout behind a trusted proxy", () => {
  const server = useInProcessServer({ env: { TRUSTED_PROXIES: "127.0.0.0/8" } });

  it("counts failures per X-Forwarded-For client, not per proxy", async () => {
    const a = { "x-forwarded-for": "203.0.113.1" };
    const b = { "x-forwarded-for": "203.0.113.2" };
    // 38 failures through one proxy, 19 per client: nobody is locked out yet.
    const answers = await fail(server, 2 * (MAX_FAILURES - 1), {
      headers: (i) => (i % 2 === 0 ? a : b),
    });
    expect(answers.map((x) => x.status)).toEqual(Array(2 * (MAX_FAILURES - 1)).fill(401));

    // A's 20th failure locks A out…
    expectLockedOut(await present(server, "form", WRONG, { headers: a }), "form");
    expectLockedOut(
      await present(server, "bearer-api", TEST_DASHBOARD_TOKEN, { headers: a }),
      "bearer-api",
    );
    // …also when A writes another address in front: the proxy's entry is the rightmost.
    expectLockedOut(
      await present(server, "form", TEST_DASHBOARD_TOKEN, {
        headers: { "x-forwarded-for": "203.0.113.99, 203.0.113.1" },
      }),
      "form",
    );
    // B, with 19 failures of its own, still gets in; so does the proxy's own address.
    expect((await present(server, "form", TEST_DASHBOARD_TOKEN, { headers: b })).status).toBe(303);
    expect((await present(server, "bearer-api", TEST_DASHBOARD_TOKEN, { headers: b })).status).toBe(
      200,
    );
    expect((await present(server, "form", TEST_DASHBOARD_TOKEN)).status).toBe(303);
  });
});

describe("dashboard logout", () => {
  const server = useInProcessServer();

  it("ends the session on the server: the old cookie gets 401 and the login page, and its open feed closes", async () => {
    const cookie = await login(server);
    const other = await login(server);
    expect((await send(server, "/dashboard/api/rooms", { headers: { cookie } })).status).toBe(200);

    // An open live feed on this session.
    const feed = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.get(`${server.apiUrl}/dashboard/api/feed`, {
        agent: false,
        headers: { cookie },
      });
      req.on("response", resolve);
      req.on("error", reject);
    });
    expect(feed.statusCode).toBe(200);
    feed.resume();
    const feedClosed = new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve("still open 5 s after logout"), 5_000);
      feed.on("close", () => {
        clearTimeout(timer);
        resolve("closed");
      });
    });

    const out = await send(server, "/dashboard/logout", { method: "POST", headers: { cookie } });
    expect(out.status).toBe(303);
    expect(out.headers["set-cookie"]?.[0]).toContain("Max-Age=0");
    expect(await feedClosed).toBe("closed");

    // The browser forgot the cookie; whoever kept a copy gets nothing with it.
    for (const path of [
      "/dashboard/api/rooms",
      "/dashboard/api/rooms/lobby",
      "/dashboard/api/feed",
    ]) {
      const a = await send(server, path, { headers: { cookie } });
      expect(a.status, path).toBe(401);
      expect((JSON.parse(a.text) as { error: { code: string } }).error.code).toBe("UNAUTHORIZED");
    }
    const page = await send(server, "/dashboard", { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.text).toContain('action="/dashboard/login"');
    expect(page.text).not.toContain("data-metric");

    // Another session is not ended by this logout.
    expect(
      (await send(server, "/dashboard/api/rooms", { headers: { cookie: other } })).status,
    ).toBe(200);
  });
});

describe("dashboard sessions across worker restarts", () => {
  const server = useServer({ workers: 2 });

  it("keeps sessions in the primary: a session outlives a restart of every worker", async () => {
    const cookie = await login(server);
    const before = new Set(await workerPids(server));
    expect((await server.api("POST", "/api/admin/restart-workers")).status).toBe(202);
    await waitFor(
      "every worker to be replaced",
      async () => {
        const now = await workerPids(server);
        return now.length === 2 && now.every((p) => !before.has(p)) ? true : undefined;
      },
      30_000,
    );
    await waitFor("the new workers to be ready", async () => {
      const r = await send(server, "/ready");
      return r.status === 200 ? true : undefined;
    });
    const page = await send(server, "/dashboard", { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.text).toContain("data-metric");
    expect((await send(server, "/dashboard/api/rooms", { headers: { cookie } })).status).toBe(200);
  });
});

describe("dashboard session store", () => {
  const req = (cookie?: string) =>
    ({ headers: cookie ? { cookie } : {} }) as unknown as http.IncomingMessage;
  const cookieOf = (setCookie: string) => setCookie.split(";")[0]!;

  it("is bounded: past the limit the oldest sessions are dropped, and expired ones refused", () => {
    let t = 1_000_000;
    const ended: string[] = [];
    const s = createDashboardSession(TEST_DASHBOARD_TOKEN, {
      now: () => t,
      maxSessions: 3,
      onEnd: (key) => ended.push(key),
    });
    const cookies = Array.from({ length: 5 }, () => cookieOf(s.issueCookie(req())));
    expect(new Set(cookies).size).toBe(5);
    expect(s.size).toBe(3);
    expect(ended).toHaveLength(2);
    const kinds = cookies.map((c) => s.credentials(req(c)).kind);
    expect(kinds).toEqual(["none", "none", "session", "session", "session"]);
    // The cookie is a random id, not the token nor anything derived from it alone.
    for (const c of cookies) expect(c).not.toContain(TEST_DASHBOARD_TOKEN);

    t += 12 * 3600 * 1000;
    expect(s.credentials(req(cookies[4])).kind).toBe("none");
    expect(s.size).toBe(0);
  });

  it("takes a bearer token before the cookie and compares it in full", () => {
    const s = createDashboardSession(TEST_DASHBOARD_TOKEN);
    const bearer = (t: string) =>
      ({ headers: { authorization: `Bearer ${t}` } }) as unknown as http.IncomingMessage;
    expect(s.credentials(bearer(TEST_DASHBOARD_TOKEN))).toEqual({ kind: "token", ok: true });
    expect(s.credentials(bearer(TEST_DASHBOARD_TOKEN.slice(0, -1)))).toEqual({
      kind: "token",
      ok: false,
    });
    expect(s.credentials(req("ss_dashboard=made-up-session-id"))).toEqual({ kind: "none" });
  });
});
