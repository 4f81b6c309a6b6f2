import { fileURLToPath } from "node:url";
import autocannon from "autocannon";

const SETUP = fileURLToPath(new URL("./push-request.cjs", import.meta.url));

/**
 * autocannon (one worker thread) on the target's push API: each request
 * pushes to a random user among `users`, or, with `batch` > 0, carries that
 * many such pushes (`path` /api/push/batch); see push-request.cjs. `rate`
 * fixes the overall requests per second; `roomPrefix` and `rooms` push to
 * random rooms `<roomPrefix><k>`, k < rooms, instead; `pipelining` is autocannon's own
 * default unless given. Resolves with autocannon's result.
 */
export function pushLoad(target, o) {
  const { users, duration, connections, path = "/api/push", batch = 0, pipelining, rate } = o;
  process.env.BENCH_PUSH_USERS = String(users);
  process.env.BENCH_PUSH_BATCH_SIZE = String(batch);
  process.env.BENCH_PUSH_ROOM_PREFIX = o.roomPrefix ?? "";
  process.env.BENCH_PUSH_ROOMS = String(o.rooms ?? 1);
  const load = new Promise((resolve, reject) => {
    autocannon(
      {
        url: target.apiUrl,
        connections,
        ...(pipelining !== undefined ? { pipelining } : {}),
        duration,
        workers: 1,
        ...(rate ? { overallRate: rate } : {}),
        requests: [
          {
            method: "POST",
            path,
            headers: {
              authorization: `Bearer ${target.apiKey}`,
              "content-type": "application/json",
            },
            setupRequest: SETUP,
          },
        ],
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
  // autocannon ends by itself after `duration`; a run that does not report
  // 30 s later is stuck, and fails the bench instead of hanging it.
  let timer;
  const stuck = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`autocannon did not finish ${duration} s + 30 s after it started`)),
      (duration + 30) * 1000,
    );
  });
  return Promise.race([load, stuck]).finally(() => clearTimeout(timer));
}
