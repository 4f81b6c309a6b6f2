import { type ChildProcess, spawn } from "node:child_process";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, expect } from "vitest";
import { closeAllClients } from "./client.js";
import { TEST_API_KEY, TEST_DASHBOARD_TOKEN, TEST_JWT_SECRET } from "./fixtures.js";
import { apiFetch, outputLog } from "./output.js";
import { track, waitExit } from "./processes.js";

const MAIN = fileURLToPath(new URL("../../dist/main.js", import.meta.url));
const WORKER_HOOKS = new URL("./worker-hooks.ts", import.meta.url).href;

export interface RunningServer {
  proc: ChildProcess;
  publicPort: number;
  apiPort: number;
  publicUrl: string;
  apiUrl: string;
  /** Everything the server printed so far (stdout and stderr). */
  output(): string;
  /** Fetch on the API port with the test API key. */
  api(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<Response>;
  /** SIGTERM and wait for the exit code (SIGKILL after the timeout). */
  stop(timeoutMs?: number): Promise<number | string | null>;
  /** Waits until the output matches (e.g. a log line). */
  waitForOutput(re: RegExp, timeoutMs?: number): Promise<string>;
}

export interface StartOptions {
  env?: Record<string, string | undefined>;
  workers?: number;
  /** Do not fill in test secrets (to test configuration errors). */
  bare?: boolean;
  startTimeoutMs?: number;
  /** Load test/support/worker-hooks.ts (`/api/test/*`: stall or crash a worker) into the server. */
  testHooks?: boolean;
}

/**
 * A test server's environment: port 0 on 127.0.0.1, the test secrets (unless
 * `bare`), then `env` on top; unset entries removed.
 */
export function testEnv(
  opts: { workers?: number; bare?: boolean; env?: Record<string, string | undefined> },
  extra: Record<string, string | undefined> = {},
): Record<string, string> {
  const env: Record<string, string | undefined> = {
    ...extra,
    NODE_ENV: "test",
    PORT: "0",
    API_PORT: "0",
    HOST: "127.0.0.1",
    WORKERS: String(opts.workers ?? 2),
    LOG_LEVEL: "warn",
    // Other test files run at the same time on this 2-core machine: a lag p99
    // over the default 500 ms made servers shed (503, OVERLOADED) in tests
    // where load shedding is not under test. protection.test.ts sets its own.
    MAX_EVENT_LOOP_LAG_MS: "5000",
    MAX_PUSH_LAG_MS: "5000",
    ...(opts.bare
      ? {}
      : {
          JWT_SECRET: TEST_JWT_SECRET,
          API_KEYS: TEST_API_KEY,
          DASHBOARD_TOKEN: TEST_DASHBOARD_TOKEN,
        }),
    ...opts.env,
  };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return env as Record<string, string>;
}

/** Starts the real server (`node dist/main.js`: primary + forked workers) on free ports. */
export async function startServer(opts: StartOptions = {}): Promise<RunningServer> {
  // No NODE_COMPILE_CACHE here: dist/main.js turns on Node's compile cache
  // itself, so every forked primary and worker compiles less after the first.
  const env = testEnv(opts, { PATH: process.env.PATH, HOME: process.env.HOME });
  const args = opts.testHooks ? ["--import", WORKER_HOOKS, MAIN] : [MAIN];
  const proc = spawn(process.execPath, args, {
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  track(proc);
  const log = outputLog();
  const onChunk = (chunk: Buffer) => log.append(chunk.toString());
  proc.stdout!.on("data", onChunk);
  proc.stderr!.on("data", onChunk);

  const waitForOutput = log.waitFor;

  // A server that exits before it listens fails the start at once, with its
  // output ("close": after its last output has been read).
  let onClose: (() => void) | undefined;
  const exited = new Promise<never>((_, reject) => {
    onClose = () =>
      reject(
        new Error(
          `server exited (${proc.exitCode}) before listening; output:\n${log.text().slice(-3000)}`,
        ),
      );
    proc.once("close", onClose);
  });
  exited.catch(() => {});
  const line = await Promise.race([
    waitForOutput(
      /\{"msg":"ports","publicPort":\d+,"apiPort":\d+\}/,
      opts.startTimeoutMs ?? 30_000,
    ),
    exited,
  ]).finally(() => proc.off("close", onClose!));
  const { publicPort, apiPort } = JSON.parse(line) as { publicPort: number; apiPort: number };
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  return {
    proc,
    publicPort,
    apiPort,
    publicUrl: `http://127.0.0.1:${publicPort}`,
    apiUrl,
    output: log.text,
    waitForOutput,
    api: apiFetch(apiUrl),
    async stop(timeoutMs = 15_000) {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill("SIGTERM");
      return waitExit(proc, timeoutMs);
    },
  };
}

/**
 * One server for a whole test file: started in beforeAll, stopped in afterAll
 * (it must stop cleanly: 0), with the clients a test opened closed after each
 * test. The object returned is filled in when beforeAll has run.
 */
export function useStarted<T extends { stop(): Promise<unknown> }>(start: () => Promise<T>): T {
  const server = {} as T;
  beforeAll(async () => {
    Object.assign(server, await start());
  });
  afterAll(async () => {
    expect(await server.stop()).toBe(0);
  });
  afterEach(() => closeAllClients());
  return server;
}

/** `useStarted` with the forked server (`startServer`). */
export function useServer(opts: StartOptions = {}): RunningServer {
  return useStarted(() => startServer(opts));
}

/** Reads a response to its end: the text, and the text parsed as JSON (undefined if it is not JSON). */
export function readBody(res: http.IncomingMessage): Promise<{ text: string; body: unknown }> {
  return new Promise((resolve) => {
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (c: string) => {
      text += c;
    });
    res.on("end", () => {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      resolve({ text, body });
    });
  });
}

/** What a request on its own new connection came to: a status and body, or a connection error. */
export interface FreshAnswer {
  status?: number;
  headers?: http.IncomingHttpHeaders;
  /** The body parsed as JSON (undefined if it is not JSON). */
  body?: unknown;
  error?: string;
  ms: number;
}

/**
 * A request on a new connection of its own (the balancer hands each new
 * connection to the next worker; a pooled one may belong to a worker taken
 * earlier) with the test API key, and a JSON body if one is given. A request
 * still unanswered after `timeoutMs` ends with the error "hung".
 */
export function requestOnFreshConnection(
  method: string,
  url: string,
  body?: unknown,
  timeoutMs = 10_000,
): Promise<FreshAnswer> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      url,
      {
        method,
        agent: false,
        headers: {
          authorization: `Bearer ${TEST_API_KEY}`,
          ...(data === undefined
            ? {}
            : { "content-type": "application/json", "content-length": Buffer.byteLength(data) }),
          connection: "close",
        },
        timeout: timeoutMs,
      },
      (res) => {
        void readBody(res).then(({ body }) =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ms: Date.now() - t0 }),
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error("hung")));
    req.on("error", (err) => resolve({ error: err.message, ms: Date.now() - t0 }));
    req.end(data);
  });
}

/** A JSON POST on a new connection of its own: `requestOnFreshConnection`. */
export const postOnFreshConnection = (
  apiUrl: string,
  path: string,
  body: unknown,
  timeoutMs?: number,
): Promise<FreshAnswer> => requestOnFreshConnection("POST", `${apiUrl}${path}`, body, timeoutMs);

/** The pids of a server's workers, read from its process tree. */
export async function workerPids(server: RunningServer): Promise<number[]> {
  const { execFileSync } = await import("node:child_process");
  const out = execFileSync("ps", ["-o", "pid=", "--ppid", String(server.proc.pid)]).toString();
  return out
    .split("\n")
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
}
