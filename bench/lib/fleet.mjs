import { BenchClient, socketIoUrl } from "./sio-client.mjs";
import { Recorder, sleep } from "./stats.mjs";

/**
 * Opens many BenchClients against one target with at most `concurrency`
 * handshakes in flight, optionally registering each as its token's user and
 * joining a room (`room`: one name, or `(i) => names` per client). Counts what failed and how: a refused handshake
 * (connect_error), a closed or broken socket, or one that hung past the
 * timeout.
 */
export async function openFleet(target, tokens, o = {}) {
  const {
    concurrency = 200,
    register = true,
    room,
    timeoutMs = 20_000,
    onEvent,
    userOf = (i) => `u${i}`,
    /** A client whose handshake, register or join fails starts over this many times (`retried`). */
    retries = 0,
  } = o;
  const url = socketIoUrl(target.publicUrl);
  const clients = [];
  const handshake = new Recorder(tokens.length);
  const ready = new Recorder(tokens.length);
  /** From the `register` emit to its ack alone. */
  const registerAck = new Recorder(tokens.length);
  const failures = { refused: 0, closed: 0, error: 0, timeout: 0, register: 0, join: 0 };
  const failureSamples = [];
  let next = 0;
  let retried = 0;
  const started = performance.now();
  let lastDone = started;

  const one = async (i, attempt = 0) => {
    const c = new BenchClient(url, { token: tokens[i] }, onEvent);
    const t0 = performance.now();
    try {
      await c.connect(timeoutMs);
    } catch (err) {
      failures[err.kind ?? "error"] = (failures[err.kind ?? "error"] ?? 0) + 1;
      if (failureSamples.length < 5) failureSamples.push(`${err.kind}: ${err.message}`);
      if (attempt < retries) {
        retried += 1;
        // A refusal says when to come back (OVERLOADED and RATE_LIMITED carry
        // `retryAfter`, seconds), as a real client would: retried at once, a
        // worker that shed for a second under CI load refused all of them.
        const after = Number(err.data?.retryAfter);
        if (err.kind === "refused" && after > 0) await sleep(Math.min(after, 5) * 1000);
        return one(i, attempt + 1);
      }
      return;
    }
    handshake.add(performance.now() - t0);
    clients.push(c);
    try {
      if (register) {
        const r0 = performance.now();
        const ack = await c.emitAck("register", { userId: userOf(i) }, timeoutMs);
        registerAck.add(performance.now() - r0);
        if (!ack?.ok) throw Object.assign(new Error(JSON.stringify(ack)), { step: "register" });
      }
      for (const r of typeof room === "function" ? room(i) : room ? [room] : []) {
        const ack = await c.emitAck("room:join", { room: r }, timeoutMs);
        if (!ack?.ok) throw Object.assign(new Error(JSON.stringify(ack)), { step: "join" });
      }
      ready.add(performance.now() - t0);
      lastDone = performance.now();
    } catch (err) {
      const step = err.step ?? (register ? "register" : "join");
      failures[step] += 1;
      if (failureSamples.length < 5) failureSamples.push(`${step}: ${err.message}`);
      if (attempt < retries) {
        retried += 1;
        c.terminate();
        clients.splice(clients.indexOf(c), 1);
        return one(i, attempt + 1);
      }
    }
  };

  const lanes = Array.from({ length: Math.min(concurrency, tokens.length) }, async () => {
    while (next < tokens.length) await one(next++);
  });
  await Promise.all(lanes);
  const seconds = (performance.now() - started) / 1000;
  const failed = Object.values(failures).reduce((a, b) => a + b, 0);
  return {
    clients,
    seconds,
    attempted: tokens.length,
    connected: handshake.count,
    completed: ready.count,
    failed,
    retried,
    failures,
    failureSamples,
    handshakeMs: handshake.summary(),
    readyMs: ready.summary(),
    registerAckMs: registerAck.summary(),
    /**
     * Clients that completed every step, per second from the start to the
     * last completion: a hung handshake is counted in `failures.timeout`,
     * not by letting its timeout stretch the storm.
     */
    perSecond: ready.count / ((lastDone - started) / 1000),
  };
}

/** Closes every client and waits a moment for the server to notice. */
export async function closeFleet(clients) {
  for (const c of clients) c.terminate();
  clients.length = 0;
}

/** Live clients (those the server has not closed). */
export const alive = (clients) => clients.filter((c) => c.connected).length;
