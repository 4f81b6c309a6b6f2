import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser } from "./support/browser.js";
import { startInProcess, type TestServer } from "./support/in-process.js";

// The newcomer's path, in a real browser: open the demo page on a server
// started in dev mode (the one-process layer: the page, its client script
// and the API are the subject, not the cluster), connect as a user, push
// through the API, see the push on the page.

let server: TestServer;
let browser: Browser;
beforeAll(async () => {
  // Dev mode: no JWT secret given, so the demo's token endpoint signs with the generated one.
  server = await startInProcess({
    env: { NODE_ENV: "development", JWT_SECRET: undefined },
  });
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  expect(await server.stop()).toBe(0);
});

describe("demo page", () => {
  it("connects, registers and shows a push sent through the API", async () => {
    const page = await browser.newPage();
    const hosts = new Set<string>();
    page.on("request", (r) => hosts.add(new URL(r.url()).hostname));
    // What a newcomer sees in the console: nothing (no errors, warnings, failed loads).
    const console: string[] = [];
    page.on("console", (m) => console.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => console.push(`pageerror: ${e.message}`));
    page.on("requestfailed", (r) => console.push(`failed: ${r.url()}`));
    page.on("response", (r) => {
      if (r.status() >= 400) console.push(`${r.status()}: ${r.url()}`);
    });
    await page.goto(server.publicUrl);
    await page.fill("#user", "demo-user");
    await page.click("#connect");
    await page.waitForSelector('#status[data-state="registered"]', { timeout: 15_000 });
    expect(await page.textContent("#curl")).toContain(`:${server.apiPort}/api/push`);

    const res = await server.api("POST", "/api/push", {
      userId: "demo-user",
      event: "hello",
      payload: { text: "hi from the API ✓" },
    });
    expect(res.status).toBe(202);
    const item = await page.waitForSelector("#pushes li", { timeout: 10_000 });
    expect(await item.textContent()).toContain("hi from the API ✓");
    const dir = mkdtempSync(join(tmpdir(), "ss-demo-"));
    await page.screenshot({ path: join(dir, "demo.png"), fullPage: true });
    expect([...hosts]).toEqual(["127.0.0.1"]);
    // The user-name field's pattern is a valid `v`-flag regex: it checks a name.
    expect(await page.$eval("#user", (el) => (el as HTMLInputElement).validity.valid)).toBe(true);
    await page.fill("#user", "no spaces allowed");
    expect(await page.$eval("#user", (el) => (el as HTMLInputElement).validity.valid)).toBe(false);
    expect(console).toEqual([]);
  }, 60_000);
});
