import { spawn } from "node:child_process";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { startTarget } from "../lib/targets.mjs";
import { benchApiKey, benchKeys } from "../lib/tokens.mjs";

/**
 * `npm run scenario` (in bench/artillery): starts socket-server (2 workers,
 * run `npm run build` in the repository first) and a minimal backend on free
 * loopback ports, runs ../../artillery.yml against them, then stops both.
 * Artillery's own summary is the result (plus push.* counters from
 * processor.cjs); the exit code is Artillery's: non-zero when an `ensure`
 * check in artillery.yml fails. ARTILLERY_ARGS adds arguments, e.g.
 * `--output report.json`. SCENARIO_BACKEND_STATUS makes the backend answer
 * every event with that status (503: a failing backend, a run that must fail).
 */

const backendStatus = Number(process.env.SCENARIO_BACKEND_STATUS) || 200;
const backend = http.createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    res.writeHead(backendStatus, { "content-type": "application/json" });
    res.end(backendStatus < 300 ? '{"received":true}' : '{"error":"failing on purpose"}');
  });
});
await new Promise((resolve) => backend.listen(0, "127.0.0.1", resolve));
const backendUrl = `http://127.0.0.1:${backend.address().port}`;

const keys = benchKeys("HS256");
const apiKey = benchApiKey();
const target = await startTarget("socket-server", {
  keys,
  apiKey,
  workers: Number(process.env.BENCH_WORKERS) || 2,
  env: { BACKEND_URL: backendUrl },
});
process.stdout.write(
  `socket-server on ${target.publicUrl} (API ${target.apiUrl}), backend ${backendUrl}\n`,
);

const artillery = fileURLToPath(new URL("./node_modules/.bin/artillery", import.meta.url));
const yml = fileURLToPath(new URL("../../artillery.yml", import.meta.url));
const extra = (process.env.ARTILLERY_ARGS ?? "").split(" ").filter(Boolean);
const code = await new Promise((resolve) => {
  const child = spawn(artillery, ["run", ...extra, yml], {
    stdio: "inherit",
    env: {
      ...process.env,
      ARTILLERY_DISABLE_TELEMETRY: "true",
      SS_PUBLIC_URL: target.publicUrl,
      SS_API_URL: target.apiUrl,
      SS_API_KEY: apiKey,
      SS_JWT_SECRET: keys.serverEnv.JWT_SECRET,
    },
  });
  child.on("exit", (c) => resolve(c ?? 1));
});
await target.stop();
backend.close();
process.exit(code);
