import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createLogRing } from "../src/shared/log-ring.js";
import { createScrubber, REDACT_PATHS, REDACTED } from "../src/shared/logger.js";
import { closeAllClients, connect, connectRegistered, emitAck } from "./support/client.js";
import { signToken, TEST_API_KEY, TEST_DASHBOARD_TOKEN } from "./support/fixtures.js";
import { type RunningServer, startServer } from "./support/server.js";

describe("redaction (units)", () => {
  it("pino's redact paths remove tokens, keys, signatures, cookies and authorization", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const log = pino({ redact: { paths: REDACT_PATHS, censor: REDACTED } }, sink);
    log.info(
      {
        token: "t1",
        auth: { token: "t2" },
        headers: { authorization: "Bearer k1", cookie: "c=1", "x-signature": "s1" },
        req: { headers: { authorization: "Bearer k2", "x-api-key": "k3" } },
        apiKey: "k4",
        secret: "s2",
      },
      "hello",
    );
    const line = lines.join("");
    for (const s of ["t1", "t2", "k1", "c=1", "s1", "k2", "k3", "k4", "s2"]) {
      expect(line).not.toContain(`"${s}"`);
      expect(line).not.toContain(`${s}"`);
    }
    expect(line).toContain(REDACTED);
  });

  it("the line scrubber removes JWTs and configured secrets wherever they appear", async () => {
    const jwt = await signToken("alice");
    const scrub = createScrubber(["my-api-key-0123456789", "dash-token-abcdefgh"]);
    const out = scrub(
      JSON.stringify({
        msg: `refused ${jwt} for my-api-key-0123456789`,
        url: "/dashboard?token=dash-token-abcdefgh",
      }),
    );
    expect(out).not.toContain(jwt);
    expect(out).not.toContain(jwt.split(".")[1]!);
    expect(out).not.toContain("my-api-key-0123456789");
    expect(out).not.toContain("dash-token-abcdefgh");
    expect(JSON.parse(out).msg).toBe(`refused ${REDACTED} for ${REDACTED}`);
  });

  it("the recent-lines ring keeps the newest lines and hands them out once per cursor", () => {
    const ring = createLogRing(3);
    expect(ring.since(0, 10)).toEqual({ seq: 0, lines: [] });
    for (const l of ["a", "b", "c", "d"]) ring.push(l);
    expect(ring.since(0, 10)).toEqual({ seq: 4, lines: ["b", "c", "d"] });
    expect(ring.since(3, 10)).toEqual({ seq: 4, lines: ["d"] });
    expect(ring.since(4, 10)).toEqual({ seq: 4, lines: [] });
    expect(ring.since(0, 2)).toEqual({ seq: 4, lines: ["c", "d"] });
    // A cursor from an earlier process (ahead of this one) starts over.
    expect(ring.since(99, 10)).toEqual({ seq: 4, lines: ["b", "c", "d"] });
  });
});

describe("log files in LOG_DIR (real server, two workers)", () => {
  let dir: string;
  let server: RunningServer;
  const FILE_COUNT = 2;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ss-logs-"));
    server = await startServer({
      workers: 2,
      env: {
        LOG_DIR: dir,
        LOG_LEVEL: "debug",
        LOG_FILE_SIZE: "1k",
        LOG_FILE_COUNT: String(FILE_COUNT),
      },
    });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(() => closeAllClients());

  it("writes JSON lines per process, rotates at the size limit, keeps a bounded count, never a secret", async () => {
    const token = await signToken("logger");
    const wrongToken = await signToken("logger", {
      secret: new TextEncoder().encode("some-other-secret-0123456789abcdef"),
    });
    const wrongKey = "wrong-api-key-0000000000000";
    const wrongDashboard = "wrong-dashboard-token-000000";

    const s = await connectRegistered(server.publicUrl, token, "logger");
    await expect(connect(server.publicUrl, wrongToken)).rejects.toMatchObject({
      data: { code: "AUTH_INVALID" },
    });
    // Secrets where a careless client might put them: an event payload, a
    // request id, a path, a query string, a wrong key, the dashboard login.
    await emitAck(s, "chat", { token, password: "hunter2-password" });
    for (let i = 0; i < 60; i++) {
      const res = await server.api("POST", "/api/push", {
        userId: "logger",
        event: "note",
        payload: { i, token },
      });
      expect(res.status).toBe(202);
    }
    await server.api("GET", "/api/status", undefined, { "x-request-id": TEST_API_KEY });
    await server.api("GET", `/api/users/${token}`);
    await server.api("GET", "/api/status", undefined, { authorization: `Bearer ${wrongKey}` });
    await fetch(`${server.apiUrl}/dashboard?token=${TEST_DASHBOARD_TOKEN}`, { redirect: "manual" });
    await fetch(`${server.apiUrl}/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `token=${wrongDashboard}`,
    });
    s.close();
    // Stopping flushes every process's file transport.
    expect(await server.stop()).toBe(0);

    const files = readdirSync(dir).sort();
    const byProcess = new Map<string, string[]>();
    for (const f of files) {
      const m = /^(primary|worker-\d+)\.\d{4}-\d{2}-\d{2}\.(\d+)\.log$/.exec(f);
      expect(m, `unexpected file ${f}`).not.toBeNull();
      byProcess.set(m![1]!, [...(byProcess.get(m![1]!) ?? []), f]);
    }
    expect([...byProcess.keys()].sort()).toEqual(["primary", "worker-0", "worker-1"]);

    const number = (f: string) => Number(f.split(".").at(-2));
    let pruned = 0;
    for (const [proc, list] of byProcess) {
      // Bounded: the current file and LOG_FILE_COUNT rotated ones (pino-roll
      // prunes at each rotation; one made in the last moment before exit
      // can leave one more).
      expect(list.length, proc).toBeLessThanOrEqual(FILE_COUNT + 2);
      const ordered = list.sort((a, b) => number(a) - number(b));
      // Every file but the newest was closed after crossing the size limit.
      for (const f of ordered.slice(0, -1)) {
        expect(statSync(join(dir, f)).size, f).toBeGreaterThanOrEqual(1024);
      }
      if (number(ordered[0]!) > 1) pruned += 1;
    }
    // 60 debug request lines over two workers cross 1 KiB many times, and
    // the oldest files are gone.
    expect(pruned).toBeGreaterThanOrEqual(1);

    const all = files.map((f) => readFileSync(join(dir, f), "utf8")).join("");
    const lines = all.split("\n").filter((l) => l.length > 0);
    const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const e of entries) {
      if (e["role"] === "worker") expect(typeof e["worker"]).toBe("number");
    }
    const requests = entries.filter((e) => e["msg"] === "api request");
    expect(requests.length).toBeGreaterThan(0);
    for (const r of requests) expect(typeof r["requestId"]).toBe("string");
    expect(entries.some((e) => e["msg"] === "all workers stopped; bye")).toBe(true);

    // The request id that was an API key, and the JWT in a path, were scrubbed.
    expect(all).toContain(REDACTED);
    for (const secret of [
      token,
      token.split(".")[2]!,
      wrongToken,
      TEST_API_KEY,
      wrongKey,
      TEST_DASHBOARD_TOKEN,
      wrongDashboard,
      "hunter2-password",
    ]) {
      expect(all).not.toContain(secret);
      expect(server.output()).not.toContain(secret);
    }
  });
});
