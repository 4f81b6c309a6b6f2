import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { TEST_BACKEND_SECRET } from "./support/backend.js";
import {
  closeAllClients,
  connect,
  connectRegistered,
  emitAck,
  nextEvent,
} from "./support/client.js";
import { signToken, TEST_API_KEY } from "./support/fixtures.js";
import { hasCommand, track, waitExit } from "./support/processes.js";
import { freePort } from "./support/redis.js";
import { type RunningServer, startServer } from "./support/server.js";

/**
 * examples/go-backend, built with the local Go toolchain and run as the real
 * backend of a 2-worker cluster: it verifies signatures, answers events and
 * pushes back through /api/push. Skipped where `go` is not installed
 * (`apt-get install -y golang-go`; .ci/run installs it).
 */

const EXAMPLE = fileURLToPath(new URL("../examples/go-backend", import.meta.url));
const hasGo = hasCommand("go", ["version"]);

interface GoBackend {
  proc: ChildProcess;
  url: string;
  output: () => string;
}

async function startGoBackend(binary: string, apiUrl: string): Promise<GoBackend> {
  const proc = spawn(binary, [], {
    env: {
      PATH: process.env.PATH,
      LISTEN_ADDR: "127.0.0.1:0",
      BACKEND_SIGNING_SECRET: TEST_BACKEND_SECRET,
      SOCKET_SERVER_API_URL: apiUrl,
      SOCKET_SERVER_API_KEY: TEST_API_KEY,
    },
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

type Ack = { ok: true; data: unknown } | { ok: false; error: { code: string; details?: unknown } };

describe.skipIf(!hasGo)("the Go example backend", () => {
  let go: GoBackend;
  let server: RunningServer;
  let wrongSecret: RunningServer;

  beforeAll(async () => {
    const binary = join(mkdtempSync(join(tmpdir(), "ss-go-")), "go-backend");
    execFileSync("go", ["build", "-o", binary, "."], {
      cwd: EXAMPLE,
      stdio: "pipe",
      env: { ...process.env, GOTOOLCHAIN: "local" },
    });
    const apiPort = await freePort();
    go = await startGoBackend(binary, `http://127.0.0.1:${apiPort}`);
    [server, wrongSecret] = await Promise.all([
      startServer({
        workers: 2,
        env: {
          API_PORT: String(apiPort),
          BACKEND_URL: go.url,
          BACKEND_SIGNING_SECRET: TEST_BACKEND_SECRET,
          FORWARD_LIFECYCLE: "true",
        },
      }),
      startServer({
        workers: 2,
        env: { BACKEND_URL: go.url, BACKEND_SIGNING_SECRET: "not-the-backend-secret-0123456" },
      }),
    ]);
  }, 60_000);
  afterAll(async () => {
    const codes = await Promise.all([server?.stop(), wrongSecret?.stop()]);
    if (go) {
      go.proc.kill("SIGTERM");
      await waitExit(go.proc, 5_000);
    }
    expect(codes).toEqual([0, 0]);
  });
  afterEach(() => closeAllClients());

  it("answers an event: the ack carries its JSON", async () => {
    const s = await connectRegistered(server.publicUrl, await signToken("alice"), "alice");
    expect(await emitAck(s, "echo", { text: "hi" })).toEqual({
      ok: true,
      data: { echo: { text: "hi" }, userId: "alice" },
    });
  });

  it("chat: the event is verified, answered, and pushed back to the room", async () => {
    const rooms = ["chat:*"];
    const alice = await connectRegistered(
      server.publicUrl,
      await signToken("alice", { rooms }),
      "alice",
    );
    const bob = await connectRegistered(server.publicUrl, await signToken("bob", { rooms }), "bob");
    for (const s of [alice, bob]) {
      expect(await emitAck(s, "room:join", { room: "chat:lobby" })).toMatchObject({ ok: true });
    }
    const got = nextEvent<Record<string, unknown>>(bob, "chat:message");
    const ack = await emitAck<Ack>(alice, "chat:send", { room: "chat:lobby", text: "hello bob" });
    expect(ack).toMatchObject({ ok: true, data: { accepted: true } });
    expect(await got).toMatchObject({ from: "alice", room: "chat:lobby", text: "hello bob" });
  });

  it("a 4xx from Go is BACKEND_REJECTED with its reason", async () => {
    const s = await connectRegistered(server.publicUrl, await signToken("carol"), "carol");
    expect(await emitAck(s, "chat:send", { room: "chat:nowhere", text: "x" })).toEqual({
      ok: false,
      error: {
        code: "BACKEND_REJECTED",
        message: "the backend answered 403",
        details: { status: 403, body: { error: "join the room first" } },
      },
    });
  });

  it("lifecycle connect: Go greets the user with a push", async () => {
    const s = await connect(server.publicUrl, await signToken("dave"));
    const welcome = nextEvent(s, "welcome");
    expect(await emitAck(s, "register", { userId: "dave" })).toMatchObject({ ok: true });
    expect(await welcome).toEqual({ userId: "dave" });
  });

  it("a request signed with another secret is refused (401 → BACKEND_REJECTED)", async () => {
    const s = await connectRegistered(wrongSecret.publicUrl, await signToken("erin"), "erin");
    expect(await emitAck(s, "echo", {})).toMatchObject({
      ok: false,
      error: {
        code: "BACKEND_REJECTED",
        details: { status: 401, body: { error: "bad signature" } },
      },
    });
  });
});
