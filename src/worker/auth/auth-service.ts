import { Piscina } from "piscina";
import type { Config } from "../../shared/config.js";
import { metrics } from "../../shared/metrics.js";
import { createTokenVerifier, type VerifyOptions, type VerifyResult } from "./verify-token.js";

/**
 * Token verification, inline or in a Piscina pool.
 *
 * Why `auto` is inline, for every key kind: jose verifies signatures with
 * WebCrypto, whose jobs already run on libuv's thread pool, so "inline" does
 * not do the signature math on the event loop. Measured on the 2-core bench
 * machine (bench/auth-cost.mjs, event-loop CPU per token / tokens per second,
 * 64 in flight): ES256 inline 32 µs / 16,400/s, through Piscina (1 thread)
 * 85 µs / 2,800/s; HS256 inline 47 µs / 20,000/s, Piscina 63 µs / 4,300/s.
 * The hop to a Piscina thread (structured clone, wake-up, result back) costs
 * the loop more than it saves. In a 10k-client ES256 connect storm
 * (bench/connect.mjs) inline took 1.40–1.44 ms of server CPU per client and
 * connected 1,115–1,124/s, the pool 1.55–1.63 ms and 990–1,056/s, with the
 * same event-loop lag (see bench/RESULTS.md). `pool` stays available.
 */
export interface AuthService {
  verify(token: string): Promise<VerifyResult>;
  readonly mode: "inline" | "pool";
  stats(): { queueSize: number; utilization: number; threads: number };
  close(): Promise<void>;
}

export function verifyOptionsFrom(cfg: Config): VerifyOptions {
  return {
    source: cfg.jwt,
    issuer: cfg.JWT_ISSUER,
    audience: cfg.JWT_AUDIENCE,
    algorithms: cfg.JWT_ALGORITHMS,
    maxLifetimeS: cfg.JWT_MAX_LIFETIME_S,
    clockSkewS: cfg.JWT_CLOCK_SKEW_S,
  };
}

export function createAuthService(cfg: Config): AuthService {
  const opts = verifyOptionsFrom(cfg);
  const mode = cfg.AUTH_VERIFY_MODE === "auto" ? "inline" : cfg.AUTH_VERIFY_MODE;
  if (mode === "inline") {
    const verify = timed("inline", createTokenVerifier(opts));
    return {
      verify,
      mode,
      stats: () => ({ queueSize: 0, utilization: 0, threads: 0 }),
      close: async () => {},
    };
  }
  const pool = new Piscina<string, VerifyResult>({
    filename: new URL("./auth-task.js", import.meta.url).href,
    workerData: opts,
    minThreads: cfg.AUTH_POOL_THREADS,
    maxThreads: cfg.AUTH_POOL_THREADS,
    idleTimeout: 60_000,
    maxQueue: 10_000,
  });
  return {
    verify: timed("pool", (token) => pool.run(token)),
    mode,
    stats: () => ({
      queueSize: pool.queueSize,
      utilization: pool.utilization,
      threads: pool.threads.length,
    }),
    close: () => pool.close(),
  };
}

/** Verification time, queueing in the pool included. */
function timed(
  mode: "inline" | "pool",
  verify: (token: string) => Promise<VerifyResult>,
): (token: string) => Promise<VerifyResult> {
  const histogram = metrics.authDuration.labels({ mode });
  return (token) => {
    const end = histogram.startTimer();
    return verify(token).finally(end);
  };
}
