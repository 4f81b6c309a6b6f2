import { type ChildProcess, fork } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { createIpcHub } from "../src/primary/ipc-hub.js";
import type { Supervisor } from "../src/primary/supervisor.js";
import {
  CLUSTER_QUERY_KINDS,
  isPrimaryToWorker,
  isWorkerToPrimary,
  PRIMARY_CALLS,
  PRIMARY_TO_WORKER_TAGS,
  type PrimaryCalls,
  WORKER_CALLS,
  WORKER_TO_PRIMARY_TAGS,
  type WorkerCalls,
} from "../src/shared/ipc.js";
import { createRpcClient, type RequestMessage, RpcError, respond } from "../src/shared/ipc-rpc.js";
import { type ChannelPort, createWorkerChannel } from "../src/worker/ipc-channel.js";
import { track, waitExit } from "./support/processes.js";

// The request/reply helper (src/shared/ipc-rpc.ts) and the two ends built on
// it (src/worker/ipc-channel.ts, src/primary/ipc-hub.ts), over real
// endpoints: in-process ones wired back to back, and a forked child.

/** Two in-process ends of a channel: what one sends, the other receives on a later turn. */
function wire() {
  const worker = new EventEmitter();
  const primary = new EventEmitter();
  let open = true;
  const deliver = (to: EventEmitter, msg: unknown) => {
    if (!open) return false;
    const copy = structuredClone(msg);
    setImmediate(() => to.emit("message", copy));
    return true;
  };
  const port: ChannelPort & EventEmitter = Object.assign(worker, {
    get connected() {
      return open;
    },
    send: (msg: unknown) => deliver(primary, msg),
  });
  return {
    port,
    /** The primary's end: what the worker sent, and a way to answer. */
    primary,
    toWorker: (msg: unknown) => deliver(worker, msg),
    close() {
      open = false;
      worker.emit("disconnect");
    },
  };
}

/**
 * A stand-in for the Supervisor with one slot, enough for the hub: the
 * messages of "its worker" come from `wire()`'s primary end.
 */
function fakeSupervisor(w: ReturnType<typeof wire>) {
  const worker = { id: 1 };
  const sup = Object.assign(new EventEmitter(), {
    slots: [{ slot: 0, worker: worker as unknown }],
    send: (_slot: number, msg: unknown) => w.toWorker(msg),
    broadcast: (msg: unknown) => void w.toWorker(msg),
  });
  w.primary.on("message", (msg: unknown) => {
    if (isWorkerToPrimary(msg)) sup.emit("message", 0, msg, worker);
  });
  return {
    sup: sup as unknown as Supervisor,
    exit: () => {
      sup.slots[0]!.worker = undefined;
      sup.emit("exit", 0, null, "SIGKILL", worker);
    },
  };
}

describe("the rpc helper", () => {
  it("matches each reply to its call by id, whatever the order", async () => {
    const sent: RequestMessage<WorkerCalls>[] = [];
    const rpc = createRpcClient<WorkerCalls>({
      peer: "test",
      send: (m) => {
        sent.push(m);
        return true;
      },
    });
    const a = rpc.call("ss:scrape", {}, 1_000);
    const b = rpc.call("ss:scrape", {}, 1_000);
    expect(sent.map((m) => m.id)).toEqual([1, 2]);
    expect(rpc.settle({ id: 2, result: { text: "b", contentType: "t" } })).toBe(true);
    expect(rpc.settle({ id: 1, result: { text: "a", contentType: "t" } })).toBe(true);
    expect(rpc.settle({ id: 1, result: { text: "again", contentType: "t" } })).toBe(false);
    await expect(a).resolves.toEqual({ text: "a", contentType: "t" });
    await expect(b).resolves.toEqual({ text: "b", contentType: "t" });
    expect(rpc.pending).toBe(0);
  });

  it("rejects with `timeout` when no reply comes in time, and ignores the late one", async () => {
    const rpc = createRpcClient<WorkerCalls>({ peer: "the primary", send: () => true });
    const started = Date.now();
    const err = await rpc.call("ss:scrape", {}, 50).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).code).toBe("timeout");
    expect((err as RpcError).message).toBe("ss:scrape: no reply from the primary in 50 ms");
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(rpc.settle({ id: 1, result: null })).toBe(false);
    expect(rpc.pending).toBe(0);
  });

  it("settles every pending call when the peer goes, and refuses later calls at once", async () => {
    const rpc = createRpcClient<WorkerCalls>({ peer: "the primary", send: () => true });
    const calls = [1, 2, 3].map(() => rpc.call("ss:scrape", {}, 60_000).catch((e: unknown) => e));
    expect(rpc.pending).toBe(3);
    rpc.close("the channel to the primary closed");
    for (const err of await Promise.all(calls)) {
      expect((err as RpcError).code).toBe("closed");
      expect((err as RpcError).message).toBe("the channel to the primary closed");
    }
    const later = await rpc.call("ss:scrape", {}, 60_000).catch((e: unknown) => e);
    expect((later as RpcError).code).toBe("closed");
    expect(rpc.pending).toBe(0);
  });

  it("rejects at once when the message cannot be sent", async () => {
    const rpc = createRpcClient<WorkerCalls>({
      peer: "worker 1",
      send: () => {
        throw new Error("ERR_IPC_CHANNEL_CLOSED");
      },
    });
    const err = await rpc.call("ss:scrape", {}, 60_000).catch((e: unknown) => e);
    expect((err as RpcError).code).toBe("closed");
    expect(rpc.pending).toBe(0);
  });

  it("respond: the handler's result or its error, under the reply tag; nothing for id 0", async () => {
    const replies: unknown[] = [];
    const send = (r: unknown) => replies.push(r);
    respond({ id: 7 }, "ss:users-ok", () => null, send);
    // A handler that answers at once is replied to at once.
    expect(replies).toEqual([{ t: "ss:users-ok", id: 7, result: null }]);
    respond(
      { id: 8 },
      "ss:store-result",
      () => {
        throw new Error("full");
      },
      send,
    );
    respond({ id: 9 }, "ss:query-result", async () => ({ replies: [], missing: [1] }), send);
    respond({ id: 0 }, "ss:users-ok", () => null, send);
    await new Promise((r) => setImmediate(r));
    expect(replies.slice(1)).toEqual([
      { t: "ss:store-result", id: 8, error: "Error: full" },
      { t: "ss:query-result", id: 9, result: { replies: [], missing: [1] } },
    ]);
  });
});

describe("the tags", () => {
  it("differ by direction: each guard refuses the other direction's tags", () => {
    expect(WORKER_TO_PRIMARY_TAGS.size).toBeGreaterThan(0);
    expect(PRIMARY_TO_WORKER_TAGS.size).toBeGreaterThan(0);
    for (const t of WORKER_TO_PRIMARY_TAGS) {
      expect(PRIMARY_TO_WORKER_TAGS.has(t)).toBe(false);
      expect(isWorkerToPrimary({ t })).toBe(true);
      expect(isPrimaryToWorker({ t })).toBe(false);
    }
    for (const t of PRIMARY_TO_WORKER_TAGS) {
      expect(isPrimaryToWorker({ t })).toBe(true);
      expect(isWorkerToPrimary({ t })).toBe(false);
    }
    // Requests one way, their replies the other.
    for (const [req, reply] of Object.entries(WORKER_CALLS)) {
      expect([WORKER_TO_PRIMARY_TAGS.has(req), PRIMARY_TO_WORKER_TAGS.has(reply)]).toEqual([
        true,
        true,
      ]);
    }
    for (const [req, reply] of Object.entries(PRIMARY_CALLS)) {
      expect([PRIMARY_TO_WORKER_TAGS.has(req), WORKER_TO_PRIMARY_TAGS.has(reply)]).toEqual([
        true,
        true,
      ]);
    }
  });

  it("are not guessed from a prefix: anything else is not ours", () => {
    for (const msg of [
      null,
      "ss:query",
      { t: "ss:custom", name: "revocations", data: [] },
      { t: "ss:unknown" },
      { t: 3 },
      // What the cluster adapter sends on the same channel.
      { source: "_sio_adapter", type: 1, data: {} },
    ]) {
      expect(isWorkerToPrimary(msg)).toBe(false);
      expect(isPrimaryToWorker(msg)).toBe(false);
    }
  });

  it("the kinds another host may ask are the workers' queries, not the primary's own", () => {
    expect([...CLUSTER_QUERY_KINDS].sort()).toEqual(
      [
        "custom",
        "disconnect-user",
        "join",
        "leave",
        "revoke",
        "room",
        "rooms",
        "status",
        "user",
      ].sort(),
    );
  });
});

describe("a worker channel and the primary hub, back to back", () => {
  it("requests both ways, one-way messages to their handlers, unknown messages ignored", async () => {
    const w = wire();
    const { sup } = fakeSupervisor(w);
    const hub = createIpcHub(sup);
    const channel = createWorkerChannel(w.port);

    hub.answer("ss:store", (slot, { op }) =>
      op.op === "idem-claim" ? { duplicate: true, originalId: `${slot}:${op.id}` } : null,
    );
    const routed: unknown[] = [];
    hub.on("ss:route", (slot, msg) => routed.push([slot, msg.items.length]));
    channel.answer("ss:local-query", async ({ q }) => ({ kind: q.kind }));
    const delivered: unknown[] = [];
    channel.on("ss:deliver", (msg, handle) => delivered.push([msg.items[0]?.event, handle]));

    // Not ours: the cluster adapter's messages, and strays. Nothing breaks, nothing is called.
    w.port.emit("message", { source: "_sio_adapter", type: 3 });
    w.port.emit("message", { t: "ss:query", id: 1, q: { kind: "status" }, timeoutMs: 1 });
    w.primary.emit("message", { t: "ss:deliver", items: [] });

    await expect(
      channel.call(
        "ss:store",
        { op: { op: "idem-claim", key: "k", id: "x", fingerprint: "f" } },
        1_000,
      ),
    ).resolves.toEqual({ duplicate: true, originalId: "0:x" });
    await expect(hub.call(0, "ss:local-query", { q: { kind: "status" } }, 1_000)).resolves.toEqual({
      kind: "status",
    });
    channel.send({ t: "ss:route", items: [{ users: ["u"], event: "e", payload: 1 }] });
    hub.send(0, { t: "ss:deliver", items: [{ users: ["u"], event: "hello", payload: 1 }] });
    await new Promise((r) => setTimeout(r, 20));
    expect(routed).toEqual([[0, 1]]);
    expect(delivered).toEqual([["hello", undefined]]);

    // A request nobody answers is an error reply, not a hang.
    const err = await channel.call("ss:scrape", {}, 1_000).catch((e: unknown) => e);
    expect((err as RpcError).code).toBe("remote");
    expect((err as RpcError).message).toMatch(/no handler for ss:scrape/);
    channel.close();
  });

  it("a worker that exits settles the primary's calls to it; a closed channel, the worker's", async () => {
    const w = wire();
    const { sup, exit } = fakeSupervisor(w);
    const hub = createIpcHub(sup);
    const channel = createWorkerChannel(w.port);
    channel.answer("ss:local-query", () => new Promise(() => {}));
    hub.answer("ss:scrape", () => new Promise(() => {}));

    const fromPrimary = [1, 2].map(() =>
      hub.call(0, "ss:local-query", { q: { kind: "status" } }, 60_000).catch((e: unknown) => e),
    );
    const fromWorker = [1, 2].map(() =>
      channel.call("ss:scrape", {}, 60_000).catch((e: unknown) => e),
    );
    await new Promise((r) => setTimeout(r, 20));
    exit();
    w.close();
    for (const err of await Promise.all([...fromPrimary, ...fromWorker])) {
      expect((err as RpcError).code).toBe("closed");
    }
    // No worker in the slot any more: at once.
    const none = await hub
      .call(0, "ss:local-query", { q: { kind: "status" } }, 60_000)
      .catch((e: unknown) => e);
    expect((none as RpcError).code).toBe("closed");
  });
});

describe("over a real IPC channel (a forked child)", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "ss-ipc-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const channelModule = pathToFileURL(
    fileURLToPath(new URL("../dist/worker/ipc-channel.js", import.meta.url)),
  ).href;
  const script = path.join(dir, "child.mjs");
  // A worker end that answers `status` and never answers anything else.
  writeFileSync(
    script,
    `import { createWorkerChannel } from ${JSON.stringify(channelModule)};
const channel = createWorkerChannel();
channel.answer("ss:local-query", ({ q }) =>
  q.kind === "status" ? { pid: process.pid } : new Promise(() => {}));
channel.send({ t: "ss:ready", slot: 0 });
`,
  );

  /** The primary's end of the child's channel, built on the rpc helper alone. */
  function primaryEnd(child: ChildProcess) {
    const rpc = createRpcClient<PrimaryCalls>({
      peer: "the child",
      // send() returns false on a long backlog too, but still sends: only a closed channel fails.
      send: (m) => {
        if (!child.connected) return false;
        child.send(m);
        return true;
      },
    });
    const ready = new Promise<void>((resolve) => {
      child.on("message", (msg: unknown) => {
        if (!isWorkerToPrimary(msg)) return;
        if (msg.t === "ss:ready") resolve();
        else if (msg.t === "ss:local-result") rpc.settle(msg);
      });
    });
    child.on("exit", () => rpc.close("the child exited"));
    return { rpc, ready };
  }

  it("answers by id, and a child killed mid-request settles every pending call", async () => {
    const child = fork(script, [], { serialization: "advanced", stdio: "inherit" });
    track(child);
    const { rpc, ready } = primaryEnd(child);
    await ready;

    await expect(rpc.call("ss:local-query", { q: { kind: "status" } }, 5_000)).resolves.toEqual({
      pid: child.pid,
    });
    const hanging = [1, 2, 3].map(() =>
      rpc.call("ss:local-query", { q: { kind: "rooms" } }, 60_000).catch((e: unknown) => e),
    );
    await new Promise((r) => setTimeout(r, 50));
    expect(rpc.pending).toBe(3);
    child.kill("SIGKILL");
    const errors = await Promise.all(hanging);
    expect(errors.map((e) => (e as RpcError).code)).toEqual(["closed", "closed", "closed"]);
    await waitExit(child, 5_000);
  });
});
