import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser } from "./support/browser.js";
import { freePort } from "./support/redis.js";
import { type RunningServer, startServer } from "./support/server.js";

// The browser client in headless Chromium, through the demo page (which loads
// /client.js): the server restarts on the same ports, and the page
// reconnects, re-registers and shows the next push by itself. One worker: the
// browser client is the subject; a session's requests reaching their owner
// among several workers is cluster.test.ts's and front-door.test.ts's.

let server: RunningServer | undefined;
let browser: Browser;
let ports: { PORT: string; API_PORT: string };
// Dev mode: the demo's token endpoint signs with a secret generated at each
// start, so after the restart only a token fetched again is accepted.
const start = () =>
  startServer({
    workers: 1,
    env: { ...ports, NODE_ENV: "development", JWT_SECRET: undefined },
  });

beforeAll(async () => {
  ports = { PORT: String(await freePort()), API_PORT: String(await freePort()) };
  server = await start();
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  expect(await server?.stop()).toBe(0);
});

describe("browser client through the demo page", () => {
  it("reconnects after a server restart, re-registers and shows the next push", async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(server!.publicUrl);
    await page.fill("#user", "browser-user");
    await page.click("#connect");
    await page.waitForSelector('#status[data-state="registered"]', { timeout: 15_000 });
    // The curl line names the real API port (from /demo/info), not a guess.
    await expect.poll(() => page.textContent("#curl")).toContain(`:${server!.apiPort}/api/push`);

    const push = (text: string) =>
      server!.api("POST", "/api/push", {
        userId: "browser-user",
        event: "hello",
        payload: { text },
      });
    expect((await push("before the restart")).status).toBe(202);
    await page.waitForSelector('#pushes li:has-text("before the restart")', { timeout: 10_000 });

    expect(await server!.stop()).toBe(0);
    server = undefined;
    await page.waitForSelector('#status[data-state="reconnecting"]', { timeout: 15_000 });
    server = await start();
    await page.waitForSelector('#status[data-state="registered"]', { timeout: 30_000 });

    expect((await push("after the restart")).status).toBe(202);
    await page.waitForSelector('#pushes li:has-text("after the restart")', { timeout: 10_000 });
    expect(await page.locator("#pushes li").count()).toBe(2);
    expect(errors).toEqual([]);
  }, 60_000);
});
