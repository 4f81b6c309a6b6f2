import { createPublicKey, verify as cryptoVerify } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { settings } from "./lib/knobs.mjs";
import { clockTicks, ROOT } from "./lib/machine.mjs";
import { markdownTable, publish } from "./lib/report.mjs";
import { runBench } from "./lib/run.mjs";
import { Recorder } from "./lib/stats.mjs";
import { benchTokens } from "./lib/tokens.mjs";

/**
 * What one token verification costs the worker's event loop, inline and
 * through the Piscina pool, for HS256 and ES256 — the figures behind
 * AUTH_VERIFY_MODE=auto (src/worker/auth/auth-service.ts). Uses socket-server's
 * own verifier and auth service from dist/ (run `npm run build` first).
 *
 * Main-thread CPU comes from /proc/self/task/<pid>/stat (the main thread
 * only), so work done in pool threads or libuv's threads is not counted as
 * the event loop's. A bare node:crypto ES256 verification is measured too,
 * for reference.
 */
const SPEC = {
  AUTH_TOKENS: [4000, "tokens verified per case"],
  AUTH_CONCURRENCY: [[1, 64], "verifications in flight"],
  AUTH_POOL_THREADS: [1, "Piscina threads (socket-server's default is 1 per worker)"],
};

const dist = (p) => pathToFileURL(join(ROOT, "dist", p)).href;

function mainThreadCpuMs() {
  const s = readFileSync(`/proc/self/task/${process.pid}/stat`, "latin1");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / clockTicks();
}

async function run(verify, tokens, concurrency) {
  const lat = new Recorder(tokens.length);
  let next = 0;
  let failed = 0;
  const cpu0 = mainThreadCpuMs();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < tokens.length) {
        const token = tokens[next++];
        const s = performance.now();
        const r = await verify(token);
        lat.add((performance.now() - s) * 1000);
        if (!r.ok) failed++;
      }
    }),
  );
  const wallMs = performance.now() - t0;
  const cpuMs = mainThreadCpuMs() - cpu0;
  const l = lat.summary();
  return {
    perSec: tokens.length / (wallMs / 1000),
    mainThreadUsPerToken: (cpuMs * 1000) / tokens.length,
    p50Us: l.p50,
    p99Us: l.p99,
    failed,
  };
}

function fakeConfig(serverEnv, mode, threads) {
  const jwt = serverEnv.JWT_SECRET
    ? { kind: "secret", secret: serverEnv.JWT_SECRET }
    : { kind: "publicKey", pem: serverEnv.JWT_PUBLIC_KEY };
  return { jwt, AUTH_VERIFY_MODE: mode, AUTH_POOL_THREADS: threads };
}

async function main() {
  const o = settings("bench: cost of one token verification, inline vs pool", SPEC);
  const { createTokenVerifier } = await import(dist("worker/auth/verify-token.js"));
  const { createAuthService } = await import(dist("worker/auth/auth-service.js"));
  const rows = [];
  for (const alg of ["HS256", "ES256"]) {
    const { keys, tokens } = await benchTokens(alg, o.AUTH_TOKENS);
    const cases = [
      ["jose inline", createTokenVerifier({ source: fakeConfig(keys.serverEnv).jwt })],
    ];
    const pool = createAuthService(fakeConfig(keys.serverEnv, "pool", o.AUTH_POOL_THREADS));
    cases.push([`Piscina pool (${o.AUTH_POOL_THREADS} thread)`, pool.verify]);
    if (alg === "ES256") {
      // The same check without jose's WebCrypto path: one synchronous call.
      const key = createPublicKey(keys.serverEnv.JWT_PUBLIC_KEY);
      cases.push([
        "node:crypto verify (reference)",
        async (token) => {
          const dot = token.lastIndexOf(".");
          const ok = cryptoVerify(
            "sha256",
            Buffer.from(token.slice(0, dot)),
            { key, dsaEncoding: "ieee-p1363" },
            Buffer.from(token.slice(dot + 1), "base64url"),
          );
          return { ok };
        },
      ]);
    }
    for (const [label, verify] of cases) {
      await run(verify, tokens.slice(0, 200), 8); // warm-up (JIT, thread start)
      for (const c of o.AUTH_CONCURRENCY) {
        const r = await run(verify, tokens, c);
        rows.push({ alg, how: label, concurrency: c, ...r });
        process.stdout.write(
          `${alg} ${label} c=${c}: ${r.mainThreadUsPerToken.toFixed(1)} µs main thread, ` +
            `${r.perSec.toFixed(0)}/s\n`,
        );
      }
    }
    await pool.close();
  }
  const columns = [
    { key: "alg", title: "alg" },
    { key: "how", title: "how" },
    { key: "concurrency", title: "in flight", digits: 0 },
    { key: "mainThreadUsPerToken", title: "event-loop CPU µs/token", digits: 1 },
    { key: "perSec", title: "tokens/s", digits: 0 },
    { key: "p50Us", title: "latency p50 µs", digits: 0 },
    { key: "p99Us", title: "latency p99 µs", digits: 0 },
    { key: "failed", title: "failed", digits: 0 },
  ];
  publish("auth-cost", { settings: o, rows }, "Token verification cost: inline vs pool", [
    markdownTable(columns, rows),
  ]);
}

await runBench(main);
