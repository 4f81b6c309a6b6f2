import { describe, expect, it } from "vitest";
import { connectRegistered } from "./support/client.js";
import { signToken, TEST_DASHBOARD_TOKEN } from "./support/fixtures.js";
import { scrape } from "./support/prom-text.js";
import { useServer } from "./support/server.js";
import { readEvents } from "./support/sse.js";
import { waitFor } from "./support/wait.js";

// The dashboard's HTTP side without a browser: who gets in, what the pages
// and endpoints give away without a session, the live feed, and rooms
// paginated across two workers.

const server = useServer({ workers: 2 });

// A keep-alive connection the balancer gave a worker (after an API call) is
// sent back with a 307 to a fresh one, which the primary serves: follow it.
const get = (
  path: string,
  headers: Record<string, string> = {},
  redirect: RequestRedirect = "follow",
) => fetch(`${server.apiUrl}${path}`, { headers, redirect });

async function login(): Promise<string> {
  const res = await fetch(`${server.apiUrl}/dashboard/login`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: TEST_DASHBOARD_TOKEN }).toString(),
    redirect: "manual",
  });
  expect(res.status).toBe(303);
  return res.headers.get("set-cookie")!.split(";")[0]!;
}

describe("dashboard access", () => {
  const dataPaths = ["/dashboard/api/feed", "/dashboard/api/rooms", "/dashboard/api/rooms/lobby"];

  it("answers 401 on every data endpoint and the feed without a session or with a wrong one", async () => {
    const wrong: Record<string, string>[] = [
      {},
      { authorization: "Bearer wrong-dashboard-token-0000" },
      { cookie: "ss_dashboard=9999999999.forged" },
      { cookie: `ss_dashboard=${TEST_DASHBOARD_TOKEN}` },
    ];
    for (const path of dataPaths) {
      for (const headers of wrong) {
        const res = await get(path, headers);
        expect(res.status, `${path} ${JSON.stringify(headers)}`).toBe(401);
        const body = (await res.json()) as { error: { code: string } };
        expect(body.error.code).toBe("UNAUTHORIZED");
      }
    }
  });

  it("shows the login form, with no numbers, until the token is given", async () => {
    const page = await get("/dashboard");
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('action="/dashboard/login"');
    expect(html).not.toContain("data-metric");
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");

    const wrong = await get("/dashboard?token=wrong-dashboard-token-0000");
    expect(wrong.status).toBe(401);
    expect(await wrong.text()).toContain("Wrong token");

    const bad = await fetch(`${server.apiUrl}/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "token=wrong-dashboard-token-0000",
      redirect: "manual",
    });
    expect(bad.status).toBe(401);
    expect(bad.headers.get("set-cookie")).toBeNull();
  });

  it("logs in with ?token= (redirect drops it) or the form, into an HttpOnly SameSite=Strict cookie", async () => {
    const viaQuery = await get(`/dashboard?token=${TEST_DASHBOARD_TOKEN}`, {}, "manual");
    expect(viaQuery.status).toBe(303);
    expect(viaQuery.headers.get("location")).toBe("/dashboard");
    const setCookie = viaQuery.headers.get("set-cookie")!;
    expect(setCookie).toMatch(/^ss_dashboard=/);
    expect(setCookie).toContain("HttpOnly");
    expect(setCookie).toContain("SameSite=Strict");
    expect(setCookie).toContain("Path=/dashboard");
    // The cookie is not the token.
    expect(setCookie).not.toContain(TEST_DASHBOARD_TOKEN);

    const cookie = await login();
    const page = await get("/dashboard", { cookie });
    expect(page.status).toBe(200);
    const html = await page.text();
    for (const metric of [
      "connections",
      "users",
      "rooms",
      "workers",
      "messages-in-per-second",
      "messages-out-per-second",
      "errors-per-second",
    ]) {
      // Present, and empty until the live feed fills it.
      expect(html).toContain(`data-metric="${metric}">–<`);
    }
    // Assets are local.
    expect(html).not.toMatch(/(src|href)="https?:/);
    for (const asset of ["uplot.js", "uplot.css", "dashboard.js", "dashboard.css"]) {
      expect((await get(`/dashboard/assets/${asset}`)).status, asset).toBe(200);
    }

    const out = await fetch(`${server.apiUrl}/dashboard/logout`, {
      method: "POST",
      headers: { cookie },
      redirect: "manual",
    });
    expect(out.status).toBe(303);
    expect(out.headers.get("set-cookie")).toContain("Max-Age=0");
  });

  it("streams a snapshot and then an update per second with the host's numbers", async () => {
    const cookie = await login();
    await connectRegistered(server.publicUrl, await signToken("feed-a"), "feed-a");
    const ctrl = new AbortController();
    const res = await fetch(`${server.apiUrl}/dashboard/api/feed`, {
      headers: { cookie },
      signal: ctrl.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect((await scrape(server.apiUrl)).value("socket_server_dashboard_clients")).toBe(1);
    const events = await readEvents(res, (e) => {
      if (e.event !== "update") return false;
      const u = JSON.parse(e.data) as { headline: { connections: number } };
      return u.headline.connections === 1;
    });
    ctrl.abort();
    // A closed page stops counting (and, with none left, the sampling stops).
    await waitFor("the feed to be dropped", async () => {
      const m = await scrape(server.apiUrl);
      return m.value("socket_server_dashboard_clients") === 0 ? true : undefined;
    });
    expect(events[0]!.event).toBe("snapshot");
    const last = JSON.parse(events.at(-1)!.data) as {
      headline: Record<string, unknown>;
      workers: { up: boolean }[];
    };
    expect(last.headline).toMatchObject({
      connections: 1,
      users: 1,
      usersExact: true,
      workers: 2,
      workersTotal: 2,
    });
    expect(last.workers.map((w) => w.up)).toEqual([true, true]);
  });
});

describe("dashboard rooms", () => {
  it("pages through rooms on both workers in name order, filters by prefix, drills down to members", async () => {
    const cookie = await login();
    const users = ["ra", "rb", "rc"];
    await Promise.all(
      users.map(async (u) => connectRegistered(server.publicUrl, await signToken(u), u)),
    );
    const names = Array.from({ length: 120 }, (_, i) => `room-${String(i).padStart(3, "0")}`);
    for (const [i, room] of names.entries()) {
      const res = await server.api("PUT", `/api/rooms/${room}/members/${users[i % 3]}`);
      expect(res.status).toBe(200);
    }
    for (const u of users) {
      expect((await server.api("PUT", `/api/rooms/common/members/${u}`)).status).toBe(200);
    }

    const seen: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < 5; page++) {
      const q = new URLSearchParams({ limit: "50", ...(after ? { after } : {}) });
      const res = await get(`/dashboard/api/rooms?${q}`, { cookie });
      expect(res.status).toBe(200);
      const body = (await res.json()) as {
        rooms: { room: string; sockets: number }[];
        nextAfter?: string;
      };
      expect(body.rooms.length).toBeLessThanOrEqual(50);
      seen.push(...body.rooms.map((r) => r.room));
      if (!body.nextAfter) break;
      after = body.nextAfter;
    }
    expect(seen).toEqual(["common", ...names]);

    const filtered = (await (
      await get("/dashboard/api/rooms?prefix=room-1", { cookie })
    ).json()) as {
      rooms: { room: string }[];
    };
    expect(filtered.rooms.map((r) => r.room)).toEqual(names.slice(100));

    const withUsers = (await (
      await get("/dashboard/api/rooms?prefix=user:r&userRooms=1", { cookie })
    ).json()) as { rooms: { room: string; sockets: number }[] };
    expect(withUsers.rooms).toEqual(users.map((u) => ({ room: `user:${u}`, sockets: 1 })));

    const members = (await (await get("/dashboard/api/rooms/common", { cookie })).json()) as {
      sockets: number;
      users: number;
      members: { userId: string; sockets: number }[];
    };
    expect(members).toMatchObject({ sockets: 3, users: 3 });
    expect(members.members).toEqual(users.map((userId) => ({ userId, sockets: 1 })));

    expect((await get("/dashboard/api/rooms?limit=1000", { cookie })).status).toBe(400);
  });
});
