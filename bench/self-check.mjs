import { isDeepStrictEqual } from "node:util";
import { io } from "socket.io-client";
import { settings } from "./lib/knobs.mjs";
import { markdownTable } from "./lib/report.mjs";
import { runBench } from "./lib/run.mjs";
import { BenchClient, socketIoUrl } from "./lib/sio-client.mjs";
import { sleep } from "./lib/stats.mjs";
import { apiPost, startTarget } from "./lib/targets.mjs";
import { benchApiKey, benchKeys } from "./lib/tokens.mjs";

/**
 * Checks the load generator's Socket.IO client (bench/lib/sio-client.mjs)
 * against the real socket.io-client on a running target: the same acks for
 * register, room:join and a forwarded event, the same pushes (to the user
 * and to a room, payload unchanged), the same refusal of a bad token, a push
 * that waits for client acks, and both still connected after several
 * heartbeats. Exits non-zero when they differ.
 */
const SPEC = {
  SELF_CHECK_TARGETS: [
    ["socket-server", "single", "docs-cluster", "bare-ws"],
    "targets to check against",
  ],
  SELF_CHECK_CLIENTS: [["raw", "ws"], "bench client WebSocket layers to check"],
};

/**
 * Every step has this long, so that a step that never ends fails the check
 * with its name (the smoke run in CI stops the whole bench after 60 s).
 */
const STEP_MS = 5_000;

/** A push through the target's API, answered within STEP_MS. */
const push = (target, body) =>
  apiPost(target, "/api/push", body, STEP_MS).catch((err) => {
    throw new Error(`push ${JSON.stringify(body.userId ?? body.room)}: ${err.message}`);
  });

const PAYLOAD = { text: "é✓ 日本", n: [1, 2.5, null, true], nested: { a: { b: "c" } } };

function sioConnect(url, token) {
  const s = io(url, {
    auth: { token },
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
    timeout: STEP_MS,
  });
  return new Promise((resolve, reject) => {
    // socket.io-client's `timeout` bounds the Engine.IO open, not the
    // namespace CONNECT: a CONNECT that gets no answer (the docs recipe's
    // sticky layer loses some) would wait forever, and did, 1 run in 3.
    const timer = setTimeout(() => {
      s.close();
      reject(
        Object.assign(new Error(`no CONNECT answer within ${STEP_MS} ms`), { kind: "timeout" }),
      );
    }, STEP_MS);
    s.once("connect", () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once("connect_error", (err) => {
      clearTimeout(timer);
      s.close();
      reject(err);
    });
  });
}

/**
 * A handshake that got no answer at all is tried once more: the docs
 * recipe's sticky layer loses some. What is checked is how the two clients
 * behave, not that loss.
 */
async function twiceOnSilence(who, connect) {
  try {
    return await connect();
  } catch (err) {
    if (err?.kind !== "timeout") throw err;
    process.stderr.write(`self-check: ${who}'s CONNECT got no answer; once more\n`);
    return connect();
  }
}

function nextOf(events, name, timeoutMs = STEP_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ${name} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    events.waiters.push((event, payload) => {
      if (event !== name) return false;
      clearTimeout(timer);
      resolve(payload);
      return true;
    });
  });
}

/**
 * The next `name` on both sinks. Awaited only after the push that causes
 * it, so a failed push must not leave this rejection unhandled meanwhile.
 */
function bothOf(a, b, name) {
  const both = Promise.all([nextOf(a, name), nextOf(b, name)]);
  both.catch(() => {});
  return both;
}

function eventSink() {
  const sink = { waiters: [] };
  sink.deliver = (event, payload) => {
    const i = sink.waiters.findIndex((w) => w(event, payload));
    if (i !== -1) sink.waiters.splice(i, 1);
  };
  return sink;
}

/** Ack shapes compared without the values that differ by user. */
const shape = (ack) =>
  JSON.parse(JSON.stringify(ack, (k, v) => (k === "userId" || k === "rooms" ? "·" : v)));

async function checkTarget(name, kinds) {
  const keys = benchKeys("HS256");
  const target = await startTarget(name, {
    keys,
    apiKey: benchApiKey(),
    workers: 2,
    // Heartbeats every 300 ms, so a client that does not answer pings is dropped during the check.
    env: { PING_INTERVAL_MS: "300", PING_TIMEOUT_MS: "1000" },
  });
  // Each phase says how long it took, so that a run stopped from outside
  // (the CI smoke's time limit) shows where it was.
  process.stdout.write(`self-check: ${name} ready in ${Math.round(target.startMs)} ms\n`);
  const checks = [];
  try {
    for (const kind of kinds) {
      const check = (what, ok, detail = "") =>
        checks.push({ target: name, client: kind, what, ok: ok ? "✓" : "✗", detail });
      await checkPair(target, keys, kind, check);
    }
  } finally {
    const stopping = performance.now();
    await target.stop();
    process.stdout.write(
      `self-check: ${name} stopped in ${Math.round(performance.now() - stopping)} ms\n`,
    );
  }
  return checks;
}

/** socket.io-client as `a-<kind>` and the bench client as `b-<kind>`, side by side. */
async function checkPair(target, keys, kind, check) {
  const name = target.name;
  const alice = `a-${kind}`;
  const bob = `b-${kind}`;
  let real;
  let bench;
  try {
    const [tokA, tokB] = await Promise.all([
      keys.sign(alice, ["bench:*"]),
      keys.sign(bob, ["bench:*"]),
    ]);
    const realSink = eventSink();
    const benchSink = eventSink();
    real = await twiceOnSilence("socket.io-client", () => sioConnect(target.publicUrl, tokA));
    real.onAny((event, payload) => realSink.deliver(event, payload));
    await twiceOnSilence("the bench client", () => {
      bench?.close();
      bench = new BenchClient(
        socketIoUrl(target.publicUrl),
        { token: tokB },
        (e, p) => benchSink.deliver(e, p),
        kind,
      );
      return bench.connect(STEP_MS);
    });
    check("connect", real.connected && bench.connected);
    const ra = await real.timeout(STEP_MS).emitWithAck("register", { userId: alice });
    const ba = await bench.emitAck("register", { userId: bob }, STEP_MS);
    check(
      "register ack",
      ra.ok === true && isDeepStrictEqual(shape(ra), shape(ba)),
      JSON.stringify(ba),
    );

    const rj = await real.timeout(STEP_MS).emitWithAck("room:join", { room: "bench:x" });
    const bj = await bench.emitAck("room:join", { room: "bench:x" }, STEP_MS);
    check(
      "room:join ack",
      rj.ok === true && isDeepStrictEqual(shape(rj), shape(bj)),
      JSON.stringify(bj),
    );

    // The baselines do not forward events (nothing would answer the ack).
    if (name === "socket-server") {
      const rf = await real.timeout(STEP_MS).emitWithAck("chat:say", { text: "hi" });
      const bf = await bench.emitAck("chat:say", { text: "hi" }, STEP_MS);
      check("forwarded event ack", isDeepStrictEqual(rf, bf), JSON.stringify(bf));
    }

    const gotRoom = bothOf(realSink, benchSink, "bench:room");
    const pr = await push(target, { room: "bench:x", event: "bench:room", payload: PAYLOAD });
    const [r1, b1] = await gotRoom;
    check(
      "room push",
      pr.status === 202 && isDeepStrictEqual(r1, PAYLOAD) && isDeepStrictEqual(b1, PAYLOAD),
    );

    const gotUser = bothOf(realSink, benchSink, "bench:user");
    await push(target, { userId: alice, event: "bench:user", payload: 1 });
    await push(target, { userId: bob, event: "bench:user", payload: 2 });
    const [r2, b2] = await gotUser;
    check("user push", r2 === 1 && b2 === 2);

    // A push that waits for the clients' acks (socket-server's ackTimeoutMs option).
    if (name === "socket-server") {
      real.on("bench:acked", (_p, ack) => ack?.("ok"));
      const [pa, pb] = await Promise.all([
        push(target, {
          userId: alice,
          event: "bench:acked",
          payload: {},
          options: { ackTimeoutMs: 3000 },
        }),
        push(target, {
          userId: bob,
          event: "bench:acked",
          payload: {},
          options: { ackTimeoutMs: 3000 },
        }),
      ]);
      if (pa.status === 400) {
        check("push with client ack", true, "ackTimeoutMs not supported by this build: skipped");
      } else {
        check(
          "push with client ack",
          pa.body?.acked === 1 && pb.body?.acked === 1,
          `${JSON.stringify(pa.body)} ${JSON.stringify(pb.body)}`,
        );
      }
    }

    await sleep(1500);
    check("alive after 5 heartbeats", real.connected && bench.connected);

    const bad = await keys.sign("mallory");
    const refusedReal = await twiceOnSilence("socket.io-client", () =>
      sioConnect(target.publicUrl, `${bad}x`),
    ).catch((e) => e);
    const refusedBench = await twiceOnSilence("the bench client", () =>
      new BenchClient(socketIoUrl(target.publicUrl), { token: `${bad}x` }, undefined, kind).connect(
        STEP_MS,
      ),
    ).catch((e) => e);
    check(
      "bad token refused alike",
      refusedReal instanceof Error &&
        refusedBench?.kind === "refused" &&
        refusedReal.message === refusedBench.message &&
        isDeepStrictEqual(refusedReal.data, refusedBench.data),
      `${refusedBench?.message} ${JSON.stringify(refusedBench?.data)}`,
    );
  } catch (err) {
    check("ran to the end", false, String(err?.message ?? err));
  } finally {
    real?.close();
    bench?.close();
  }
}

async function main() {
  const o = settings("self-check: bench client vs socket.io-client", SPEC);
  const rows = [];
  for (const name of o.SELF_CHECK_TARGETS) {
    const t0 = performance.now();
    rows.push(...(await checkTarget(name, o.SELF_CHECK_CLIENTS)));
    process.stderr.write(
      `self-check: ${name} checked in ${Math.round(performance.now() - t0)} ms\n`,
    );
  }
  process.stdout.write(
    `${markdownTable(
      [
        { key: "target", title: "target" },
        { key: "client", title: "bench client" },
        { key: "what", title: "check" },
        { key: "ok", title: "same" },
        { key: "detail", title: "detail" },
      ],
      rows,
    )}\n`,
  );
  const failed = rows.filter((r) => r.ok !== "✓");
  if (failed.length) {
    process.stderr.write(`self-check: ${failed.length} check(s) differ\n`);
    process.exit(1);
  }
  process.stdout.write("self-check: the bench client behaves like socket.io-client\n");
}

await runBench(main);
