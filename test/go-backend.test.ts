import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  closeAllClients,
  connect,
  connectRegistered,
  emitAck,
  nextEvent,
} from "./support/client.js";
import { startInProcess, type TestServer } from "./support/in-process.js";
import { track, waitExit } from "./support/processes.js";
import { scrape } from "./support/prom-text.js";
import { freePort } from "./support/redis.js";
import { type RunningServer, startServer } from "./support/server.js";
import { waitFor } from "./support/wait.js";

/**
 * examples/go-backend, run as docs/http-api.md's "Connecting your Go
 * backend" says: the settings of its two commands (the example's, and
 * socket-server's `npm start`, dev mode with the demo's token endpoint),
 * only the ports free ones. Then the example is the real backend of a
 * 2-worker cluster: it verifies signatures, answers events and pushes back
 * through /api/push with the key both commands share. A second pair, whose
 * example holds a key the server does not know, shows a refused push
 * answered as a rejection, not retried; there the server runs in this process
 * (one worker behind the primary's modules: the cluster is not the subject).
 * `go vet` and `go test` run too.
 */

const EXAMPLE = fileURLToPath(new URL("../examples/go-backend", import.meta.url));
const GO_ENV = { ...process.env, GOTOOLCHAIN: "local" };

/** The settings (`NAME=value`) of the docs' Go command and of its `npm start` command. */
function docsCommands(): { go: Record<string, string>; server: Record<string, string> } {
  const doc = readFileSync(new URL("../docs/http-api.md", import.meta.url), "utf8");
  const section = doc.slice(doc.indexOf("## Connecting your Go backend"));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? "";
  const lines = block
    .replace(/\\\n\s*/g, " ")
    .split("\n")
    .filter((l) => l.trim() && !l.startsWith("#"));
  const settings = (line: string | undefined) =>
    Object.fromEntries(
      [...(line ?? "").matchAll(/(?:^|\s)([A-Z_]+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]),
    );
  const go = lines.find((l) => l.trim().endsWith("go run ."));
  const server = lines.find((l) => l.trim().endsWith("npm start"));
  expect(go, "the docs' go run command").toBeDefined();
  expect(server, "the docs' npm start command").toBeDefined();
  return { go: settings(go), server: settings(server) };
}

interface GoBackend {
  proc: ChildProcess;
  url: string;
  output: () => string;
}

async function startGoBackend(binary: string, env: Record<string, string>): Promise<GoBackend> {
  const proc = spawn(binary, [], {
    env: { PATH: process.env.PATH, ...env, LISTEN_ADDR: "127.0.0.1:0" },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  track(proc);
  let out = "";
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`go backend did not start: ${out}`)), 10_000);
    const onData = (c: Buffer) => {
      out += c.toString();
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(`http://${m[1]}`);
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.once("exit", (code) => reject(new Error(`go backend exited ${code}: ${out}`)));
  });
  return { proc, url, output: () => out };
}

/** A token from the demo's endpoint, as the demo page gets one (rooms `demo:*` and `lobby`). */
async function demoToken(server: { publicUrl: string }, userId: string): Promise<string> {
  const res = await fetch(`${server.publicUrl}/demo/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ userId }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { token: string }).token;
}

type Ack = { ok: true; data: unknown } | { ok: false; error: { code: string; details?: unknown } };

describe("the Go example backend, as the docs run it", () => {
  const docs = docsCommands();
  const gos: GoBackend[] = [];
  let server: RunningServer;
  let refusing: TestServer;
  let go: GoBackend;
  let refusingGo: GoBackend;

  beforeAll(async () => {
    // One binary per checkout, rebuilt by go when the example changes: an
    // unchanged one is not linked again (0.7 s of CPU).
    const checkout = createHash("sha256").update(EXAMPLE).digest("hex").slice(0, 12);
    const binary = join(tmpdir(), `ss-go-backend-${checkout}`);
    execFileSync("go", ["build", "-o", binary, "."], { cwd: EXAMPLE, stdio: "pipe", env: GO_ENV });
    // Each pair: the API port first (the example pushes to it), then the example, then the server.
    const pair = async <S>(
      goEnv: Record<string, string>,
      start: (opts: { bare: true; env: Record<string, string | undefined> }) => Promise<S>,
    ) => {
      const apiPort = await freePort();
      const backend = await startGoBackend(binary, {
        ...goEnv,
        SOCKET_SERVER_API_URL: `http://127.0.0.1:${apiPort}`,
      });
      gos.push(backend);
      const started = await start({
        bare: true,
        env: {
          // npm start with nothing else set: dev mode, a generated JWT secret, the demo.
          NODE_ENV: undefined,
          ...docs.server,
          BACKEND_URL: backend.url,
          API_PORT: String(apiPort),
        },
      });
      return { backend, started };
    };
    const [ok, refused] = await Promise.all([
      pair(docs.go, (opts) => startServer({ ...opts, workers: 2 })),
      pair({ ...docs.go, SOCKET_SERVER_API_KEY: "not-a-key-of-this-server-0123" }, startInProcess),
    ]);
    go = ok.backend;
    server = ok.started;
    refusing = refused.started;
    refusingGo = refused.backend;
  }, 60_000);
  afterAll(async () => {
    const codes = await Promise.all([server?.stop(), refusing?.stop()]);
    for (const g of gos) {
      g.proc.kill("SIGTERM");
      await waitExit(g.proc, 5_000);
    }
    expect(codes).toEqual([0, 0]);
  });
  afterEach(() => closeAllClients());

  it("the two commands share the API key and the signing secret, and the default addresses", () => {
    expect(docs.server["API_KEYS"]?.split(",")).toContain(docs.go["SOCKET_SERVER_API_KEY"]);
    expect(docs.server["BACKEND_SIGNING_SECRET"]).toBeDefined();
    expect(docs.server["BACKEND_SIGNING_SECRET"]).toBe(docs.go["BACKEND_SIGNING_SECRET"]);
    // The example listens on 127.0.0.1:8080 and pushes to :3001, the server's default API_PORT.
    expect(docs.server["BACKEND_URL"]).toBe(`http://${docs.go["LISTEN_ADDR"] ?? "127.0.0.1:8080"}`);
    expect(docs.go["SOCKET_SERVER_API_URL"] ?? "http://127.0.0.1:3001").toMatch(/:3001$/);
    expect(docs.server["API_PORT"] ?? "3001").toBe("3001");
  });

  it("go vet and go test pass", () => {
    execFileSync("go", ["vet", "."], { cwd: EXAMPLE, stdio: "pipe", env: GO_ENV });
    const out = execFileSync("go", ["test", "."], { cwd: EXAMPLE, env: GO_ENV }).toString();
    expect(out).toMatch(/^ok/m);
  }, 60_000);

  it("answers an event: the ack carries its JSON", async () => {
    const s = await connectRegistered(server.publicUrl, await demoToken(server, "alice"), "alice");
    expect(await emitAck(s, "echo", { text: "hi" })).toEqual({
      ok: true,
      data: { echo: { text: "hi" }, userId: "alice" },
    });
  });

  it("chat: the event is verified, answered, and pushed back to the room with the shared key", async () => {
    const alice = await connectRegistered(
      server.publicUrl,
      await demoToken(server, "alice"),
      "alice",
    );
    const bob = await connectRegistered(server.publicUrl, await demoToken(server, "bob"), "bob");
    for (const s of [alice, bob]) {
      expect(await emitAck(s, "room:join", { room: "lobby" })).toMatchObject({ ok: true });
    }
    const got = nextEvent<Record<string, unknown>>(bob, "chat:message");
    const ack = await emitAck<Ack>(alice, "chat:send", { room: "lobby", text: "hello bob" });
    expect(ack).toMatchObject({ ok: true, data: { accepted: true } });
    expect(await got).toMatchObject({ from: "alice", room: "lobby", text: "hello bob" });
  });

  it("a 4xx from Go is BACKEND_REJECTED with its reason", async () => {
    const s = await connectRegistered(server.publicUrl, await demoToken(server, "carol"), "carol");
    expect(await emitAck(s, "chat:send", { room: "demo:nowhere", text: "x" })).toEqual({
      ok: false,
      error: {
        code: "BACKEND_REJECTED",
        message: "the backend answered 403",
        details: { status: 403, body: { error: "join the room first" } },
      },
    });
  });

  it("lifecycle connect: Go greets the user with a push", async () => {
    const s = await connect(server.publicUrl, await demoToken(server, "dave"));
    const welcome = nextEvent(s, "welcome");
    expect(await emitAck(s, "register", { userId: "dave" })).toMatchObject({ ok: true });
    expect(await welcome).toEqual({ userId: "dave" });
  });

  it("refuses a request signed with another secret (401)", async () => {
    const body = JSON.stringify({ id: "x1", event: "echo", payload: {}, userId: "erin" });
    const t = Math.floor(Date.now() / 1000);
    const res = await fetch(`${go.url}/events`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-signature": `t=${t},v1=${"0".repeat(64)}` },
      body,
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: "bad signature" });
  });

  it("a push socket-server refuses (401) is answered as a rejection, tried once, not retried", async () => {
    const s = await connectRegistered(refusing.publicUrl, await demoToken(refusing, "fay"), "fay");
    expect(await emitAck(s, "room:join", { room: "lobby" })).toMatchObject({ ok: true });
    expect(await emitAck(s, "chat:send", { room: "lobby", text: "hi" })).toEqual({
      ok: false,
      error: {
        code: "BACKEND_REJECTED",
        message: "the backend answered 424",
        details: { status: 424, body: { error: "push refused", status: 401 } },
      },
    });
    // Go's welcome push on fay's register was refused too; once it says so, count the
    // attempts: one each (refused at the key check), one forward: nobody retried.
    const goOut = refusingGo.output;
    await waitFor("the welcome push's refusal", async () =>
      goOut().includes("welcome push for fay: push answered 401") ? true : undefined,
    );
    const m = await scrape(refusing.apiUrl);
    expect(m.sum("socket_server_api_requests_total", { method: "POST", status: "401" })).toBe(2);
    expect(m.sum("socket_server_forward_retries_total")).toBe(0);
  });
});
