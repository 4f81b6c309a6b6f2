import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import os from "node:os";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { SignJWT } from "jose";
import { io } from "socket.io-client";
import { runBench } from "./lib/run.mjs";

/**
 * Delivery guarantees, measured (a program, not a test):
 * 1. POST /api/push req/s to one random registered user, without and with
 *    `ackTimeoutMs` (every client acks), interleaved over rounds;
 * 2. replay time for REPLAY_MESSAGES stored messages: from the `register`
 *    emit to the register ack and to the last replayed message.
 *
 * Starts its own server (`node dist/main.js`, run `npm run build` first) on
 * free ports. Knobs (env): WORKERS=2 USERS=200 CONNECTIONS=32 DURATION_S=10
 * ROUNDS=2 ACK_TIMEOUT_MS=5000 REPLAY_MESSAGES=100 REPLAY_RUNS=5 REDIS_URL=
 *
 *   npm run build && node bench/delivery.mjs
 */

const knob = (name, def) => (process.env[name] ? Number(process.env[name]) : def);
const o = {
  WORKERS: knob("WORKERS", 2),
  USERS: knob("USERS", 200),
  CONNECTIONS: knob("CONNECTIONS", 32),
  DURATION_S: knob("DURATION_S", 10),
  ROUNDS: knob("ROUNDS", 2),
  ACK_TIMEOUT_MS: knob("ACK_TIMEOUT_MS", 5_000),
  REPLAY_MESSAGES: knob("REPLAY_MESSAGES", 100),
  REPLAY_RUNS: knob("REPLAY_RUNS", 5),
  REDIS_URL: process.env.REDIS_URL ?? "",
};
const secret = randomBytes(32).toString("hex");
const apiKey = `bench_${randomBytes(16).toString("hex")}`;
const MAIN = fileURLToPath(new URL("../dist/main.js", import.meta.url));

function startServer() {
  const proc = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH,
      NODE_ENV: "test",
      PORT: "0",
      API_PORT: "0",
      HOST: "127.0.0.1",
      WORKERS: String(o.WORKERS),
      LOG_LEVEL: "warn",
      JWT_SECRET: secret,
      API_KEYS: apiKey,
      DASHBOARD_TOKEN: randomBytes(16).toString("hex"),
      OFFLINE_MAX_PER_USER: String(Math.max(100, o.REPLAY_MESSAGES)),
      RATE_PUSHES_PER_KEY_PER_SECOND: "1000000",
      ...(o.REDIS_URL ? { REDIS_URL: o.REDIS_URL } : {}),
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    proc.stdout.on("data", (c) => {
      out += c;
      const m = /\{"msg":"ports","publicPort":(\d+),"apiPort":(\d+)\}/.exec(out);
      if (m)
        resolve({
          proc,
          publicUrl: `http://127.0.0.1:${m[1]}`,
          apiUrl: `http://127.0.0.1:${m[2]}`,
        });
    });
    proc.once("exit", (code) => reject(new Error(`server exited ${code}`)));
  });
}

const token = (sub) =>
  new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(secret));

async function client(url, userId, onEvent) {
  const s = io(url, {
    auth: { token: await token(userId) },
    transports: ["websocket"],
    forceNew: true,
  });
  await new Promise((res, rej) => {
    s.once("connect", res);
    s.once("connect_error", rej);
  });
  s.onAny(onEvent ?? (() => {}));
  return s;
}

async function register(s, userId) {
  const ack = await s.timeout(10_000).emitWithAck("register", { userId });
  if (!ack.ok) throw new Error(JSON.stringify(ack));
  return ack;
}

function cannon(server, options) {
  let i = 0;
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `${server.apiUrl}/api/push`,
        method: "POST",
        connections: o.CONNECTIONS,
        duration: o.DURATION_S,
        headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
        requests: [
          {
            setupRequest: (req) => ({
              ...req,
              body: JSON.stringify({
                userId: `u${i++ % o.USERS}`,
                event: "bench:push",
                payload: { n: i },
                ...(options ? { options } : {}),
              }),
            }),
          },
        ],
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
}

async function post(server, body) {
  const res = await fetch(`${server.apiUrl}/api/push`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return res.json();
}

async function main() {
  console.log(
    `# delivery bench: ${os.cpus()[0]?.model} x${os.cpus().length}, node ${process.version}`,
  );
  console.log(`knobs: ${JSON.stringify(o)}`);
  const server = await startServer();
  const rows = [];
  let received = 0;
  let acked = 0;
  const clients = [];
  try {
    for (let u = 0; u < o.USERS; u++) {
      const s = await client(server.publicUrl, `u${u}`, (_event, ...args) => {
        received += 1;
        const ack = args[args.length - 1];
        if (typeof ack === "function") {
          acked += 1;
          ack(true);
        }
      });
      await register(s, `u${u}`);
      clients.push(s);
    }
    for (let round = 0; round < o.ROUNDS; round++) {
      const order = round % 2 === 0 ? ["plain", "ack"] : ["ack", "plain"];
      for (const kind of order) {
        received = 0;
        acked = 0;
        const res = await cannon(
          server,
          kind === "ack" ? { ackTimeoutMs: o.ACK_TIMEOUT_MS } : undefined,
        );
        const row = {
          round,
          kind,
          reqPerSec: Math.round(res["2xx"] / o.DURATION_S),
          p50Ms: res.latency.p50,
          p99Ms: res.latency.p99,
          non2xx: res.non2xx,
          errors: res.errors + res.timeouts,
          accepted: res["2xx"],
          received,
          acked,
        };
        rows.push(row);
        console.log(JSON.stringify(row));
      }
    }

    const replays = [];
    for (let run = 0; run < o.REPLAY_RUNS; run++) {
      const userId = `replay-${run}`;
      for (let m = 0; m < o.REPLAY_MESSAGES; m++) {
        await post(server, { userId, event: "r", payload: { m }, options: { offline: "store" } });
      }
      let got = 0;
      let lastAt = 0;
      let done;
      const all = new Promise((r) => {
        done = r;
      });
      const s = await client(server.publicUrl, userId, () => {
        got += 1;
        if (got === o.REPLAY_MESSAGES) {
          lastAt = performance.now();
          done();
        }
      });
      const t0 = performance.now();
      const ack = await register(s, userId);
      const ackAt = performance.now();
      await all;
      replays.push({
        replayed: ack.replayed,
        ackMs: +(ackAt - t0).toFixed(2),
        lastMessageMs: +(lastAt - t0).toFixed(2),
      });
      s.close();
    }
    console.log(JSON.stringify({ replays }));
    const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const by = (k) => rows.filter((r) => r.kind === k).map((r) => r.reqPerSec);
    console.log(
      `\nsummary: plain ${by("plain").join(", ")} req/s; ackTimeoutMs ${by("ack").join(", ")} req/s; ` +
        `replay of ${o.REPLAY_MESSAGES}: register ack median ${med(replays.map((r) => r.ackMs))} ms, ` +
        `last message median ${med(replays.map((r) => r.lastMessageMs))} ms`,
    );
  } finally {
    for (const s of clients) s.close();
    server.proc.kill("SIGTERM");
    await new Promise((r) => server.proc.once("exit", r));
  }
}

await runBench(main);
