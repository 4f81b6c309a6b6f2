import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser } from "./support/browser.js";
import { closeAllClients, connect, connectRegistered, type TestSocket } from "./support/client.js";
import { signToken, TEST_DASHBOARD_TOKEN } from "./support/fixtures.js";
import { type RunningServer, startServer } from "./support/server.js";

// The dashboard in headless Chromium against a 2-worker cluster: log in,
// watch the connections number follow clients as they come and go, see a
// burst of pushes and a refused handshake in the rates, open a room's
// members, filter the logs; every request stays on 127.0.0.1.

let server: RunningServer;
let browser: Browser;
const shots = mkdtempSync(join(tmpdir(), "ss-dashboard-"));
beforeAll(async () => {
  server = await startServer({ workers: 2, env: { LOG_LEVEL: "info", PRESENCE_ROOMS: "lobby" } });
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  expect(await server.stop()).toBe(0);
});
afterEach(() => closeAllClients());

/** Waits until a headline number (formatted with commas) equals `eq` or exceeds `gt`. */
async function waitMetric(
  page: Page,
  name: string,
  want: { eq?: number; gt?: number },
  timeout = 15_000,
): Promise<number> {
  await page
    .waitForFunction(
      ([n, w]) => {
        const text = document.querySelector(`[data-metric="${n}"]`)?.textContent ?? "";
        const v = Number(text.replaceAll(",", ""));
        if (text === "–" || !Number.isFinite(v)) return false;
        return w.eq !== undefined ? v === w.eq : v > (w.gt ?? 0);
      },
      [name, want] as const,
      { timeout },
    )
    .catch(async (err: unknown) => {
      const text = await page.locator(`[data-metric="${name}"]`).textContent();
      throw new Error(`data-metric=${name} stayed at "${text}": ${String(err)}`);
    });
  const text = await page.locator(`[data-metric="${name}"]`).textContent();
  return Number(text!.replaceAll(",", ""));
}

describe("dashboard in Chromium", () => {
  it("logs in, follows connections live, shows pushes and errors in the rates", async () => {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    const requests: string[] = [];
    page.on("request", (r) => requests.push(r.url()));

    // No session: the login form, no numbers.
    await page.goto(`${server.apiUrl}/dashboard`);
    await page.waitForSelector("form[action='/dashboard/login']");
    expect(await page.locator("[data-metric]").count()).toBe(0);

    // A wrong token is refused and leaves no token in the address bar.
    await page.goto(`${server.apiUrl}/dashboard?token=not-the-token-000000`);
    await page.waitForSelector("p.error");
    expect(page.url()).toBe(`${server.apiUrl}/dashboard`);

    await page.fill("#token", TEST_DASHBOARD_TOKEN);
    await page.click("button[type=submit]");
    await page.waitForSelector("#feed-state.live", { timeout: 15_000 });
    const cookies = await context.cookies();
    expect(cookies).toHaveLength(1);
    expect(cookies[0]).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/dashboard" });

    // The page's own live feed is not a Socket.IO connection.
    expect(await waitMetric(page, "connections", { eq: 0 })).toBe(0);
    expect(await waitMetric(page, "workers", { eq: 2 })).toBe(2);

    const clients: TestSocket[] = [];
    for (const u of ["dash-a", "dash-b", "dash-c"]) {
      clients.push(await connectRegistered(server.publicUrl, await signToken(u), u));
    }
    await waitMetric(page, "connections", { eq: 3 });
    await waitMetric(page, "users", { eq: 3 });
    clients[2]!.close();
    await waitMetric(page, "connections", { eq: 2 });

    // A burst of pushes shows up as messages out per second.
    for (let i = 0; i < 20; i++) {
      const res = await server.api("POST", "/api/push", {
        userId: "dash-a",
        event: "note",
        payload: { i },
      });
      expect(res.status).toBe(202);
    }
    await waitMetric(page, "messages-out-per-second", { gt: 0 });

    // A refused handshake shows up as errors per second.
    await expect(connect(server.publicUrl, "not-a-jwt")).rejects.toMatchObject({
      data: { code: "AUTH_INVALID" },
    });
    await waitMetric(page, "errors-per-second", { gt: 0 });

    // Rooms: a room placed through the API, then its members.
    expect((await server.api("PUT", "/api/rooms/lobby/members/dash-a")).status).toBe(200);
    expect((await server.api("PUT", "/api/rooms/lobby/members/dash-b")).status).toBe(200);
    await waitMetric(page, "rooms", { eq: 1 });
    await page.click("#rooms-filter button[type=submit]");
    // A presence room (PRESENCE_ROOMS=lobby): how many users are present.
    await expect
      .poll(
        async () => {
          await page.click("#rooms-filter button[type=submit]");
          return page.locator('#rooms [data-presence="lobby"]').textContent({ timeout: 2_000 });
        },
        { timeout: 10_000 },
      )
      .toBe("2");
    await page.locator("#rooms button.link", { hasText: "lobby" }).click({ timeout: 10_000 });
    await page.waitForFunction(
      () =>
        document.querySelector("#members-summary")?.textContent === "2 users, 2 sockets, 2 present",
      undefined,
      { timeout: 10_000 },
    );
    expect(await page.locator("#members-body tr").count()).toBe(2);

    // Logs from every process arrive; the level filter hides info lines.
    await page.waitForFunction(() => document.querySelectorAll("#logs li").length > 0, undefined, {
      timeout: 10_000,
    });
    const workersInLogs = await page.locator("#logs .who").allTextContents();
    expect(new Set(workersInLogs).size).toBeGreaterThanOrEqual(2);
    await page.screenshot({ path: join(shots, "dashboard.png"), fullPage: true });
    console.log(`dashboard screenshot: ${join(shots, "dashboard.png")}`);
    await page.selectOption("#log-level", "50");
    expect(await page.locator("#logs li.lvl-info").count()).toBe(0);

    // Nothing left this machine: no CDN, no fonts, no telemetry.
    const hosts = new Set(requests.map((u) => new URL(u).hostname));
    expect([...hosts]).toEqual(["127.0.0.1"]);
    expect(requests.some((u) => u.endsWith("/dashboard/assets/uplot.js"))).toBe(true);
    await context.close();
  }, 90_000);

  it("accepts ?token= and drops it from the address bar", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.apiUrl}/dashboard?token=${TEST_DASHBOARD_TOKEN}`);
    await page.waitForSelector("#feed-state.live", { timeout: 15_000 });
    expect(page.url()).toBe(`${server.apiUrl}/dashboard`);
    expect(await page.evaluate(() => location.search)).toBe("");
    await context.close();
  }, 60_000);
});
