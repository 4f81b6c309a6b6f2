import http from "node:http";
import { Agent } from "undici";
import { describe, expect, it } from "vitest";
import { connectRegistered, emitAck, nextEvent } from "./support/client.js";
import { signToken, TEST_API_KEY } from "./support/fixtures.js";
import { pollingConnect } from "./support/polling.js";
import { RawSocket } from "./support/raw-socket.js";
import { useServer, workerPids } from "./support/server.js";

// Real forked clusters with two workers: routing, keep-alive polling, and
// what happens when a worker dies.

const server = useServer({ workers: 2 });

/** One HTTP request through a given agent; resolves with status, headers and body. */
function request(
  agent: http.Agent,
  port: number,
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string; localPort: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        agent,
        headers: body ? { "content-type": "text/plain;charset=UTF-8" } : {},
      },
      (res) => {
        let data = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (data += c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: data,
            localPort: req.socket?.localPort ?? 0,
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("no lost handshakes", () => {
  it("connects 5,000 clients in bursts right after start; every one completes its namespace connect", async () => {
    // The file's server, just started: this test runs first.
    const token = await signToken("storm");
    const total = 5_000;
    const burst = 500;
    let connected = 0;
    const failures: string[] = [];
    // The clients speak Socket.IO's connect by hand (the same requests and
    // frames socket.io-client sends): the server's side is the subject, and
    // 5,000 socket.io-client instances cost the test process most of the CPU.
    const connectOne = async (polling: boolean): Promise<() => unknown> => {
      if (polling) {
        const session = await pollingConnect(server.publicPort, { token });
        return session.close;
      }
      const { s, answer } = await RawSocket.connect(server.publicUrl, { token }, 10_000);
      if (!answer.startsWith('40{"sid":')) {
        s.close();
        throw new Error(`no CONNECT answer: ${answer}`);
      }
      return () => s.close();
    };
    for (let i = 0; i < total; i += burst) {
      const batch = Array.from({ length: burst }, (_, j) =>
        // One in four uses long-polling, whose POST body can arrive in its own TCP packet.
        connectOne((i + j) % 4 === 0).then(
          (close) => {
            connected += 1;
            return close;
          },
          (err: Error) => {
            failures.push(err.message);
            return undefined;
          },
        ),
      );
      const closes = await Promise.all(batch);
      await Promise.all(closes.map((close) => close?.()));
    }
    expect(failures).toEqual([]);
    expect(connected).toBe(total);
  }, 240_000);
});

describe("transports", () => {
  for (const [name, opts] of [
    ["websocket only", { transports: ["websocket"] as const }],
    ["polling only", { transports: ["polling"] as const }],
    ["polling then websocket", { transports: ["polling", "websocket"] as const, upgrade: true }],
  ] as const) {
    it(`${name}: connects, registers and receives a push`, async () => {
      const user = `t-${name.replace(/\W/g, "")}`;
      const s = await connectRegistered(server.publicUrl, await signToken(user), user, {
        transports: [...opts.transports],
        upgrade: "upgrade" in opts,
      });
      const got = nextEvent(s, "news");
      expect(
        (await server.api("POST", "/api/push", { userId: user, event: "news", payload: { n: 1 } }))
          .status,
      ).toBe(202);
      expect(await got).toEqual({ n: 1 });
      if ("upgrade" in opts) {
        await new Promise((r) => setTimeout(r, 300));
        expect(s.io.engine.transport.name).toBe("websocket");
      }
    });
  }
});

describe("polling sessions that share one keep-alive agent (two browser tabs)", () => {
  it("both sessions connect on different workers and receive pushes", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const port = server.publicPort;
    const handshake = async () => {
      const r = await request(agent, port, "GET", "/socket.io/?EIO=4&transport=polling");
      expect(r.status).toBe(200);
      return (JSON.parse(r.body.slice(1)) as { sid: string }).sid;
    };
    // The sid carries the owning worker's slot; take two sessions on different workers.
    const a = await handshake();
    let b = await handshake();
    for (let i = 0; i < 10 && b.split("_")[0] === a.split("_")[0]; i++) b = await handshake();
    expect(a.split("_")[0]).not.toBe(b.split("_")[0]);
    const tokenA = await signToken("tab-a");
    const tokenB = await signToken("tab-b");
    // Interleave the two sessions' requests on the same agent.
    for (const [sid, token] of [
      [a, tokenA],
      [b, tokenB],
    ]) {
      const r = await request(
        agent,
        port,
        "POST",
        `/socket.io/?EIO=4&transport=polling&sid=${sid}`,
        `40${JSON.stringify({ token })}`,
      );
      expect(r.status).toBe(200);
      expect(r.headers.connection).toBe("close");
    }
    for (const sid of [a, b]) {
      const r = await request(agent, port, "GET", `/socket.io/?EIO=4&transport=polling&sid=${sid}`);
      expect(r.body).toMatch(/^40\{"sid":/);
    }
    for (const [sid, user] of [
      [a, "tab-a"],
      [b, "tab-b"],
    ]) {
      await request(
        agent,
        port,
        "POST",
        `/socket.io/?EIO=4&transport=polling&sid=${sid}`,
        `420${JSON.stringify(["register", { userId: user }])}`,
      );
      const r = await request(agent, port, "GET", `/socket.io/?EIO=4&transport=polling&sid=${sid}`);
      expect(r.body).toContain('"ok":true');
    }
    for (const [sid, user] of [
      [a, "tab-a"],
      [b, "tab-b"],
    ]) {
      expect(
        (await server.api("POST", "/api/push", { userId: user, event: "ping-tab", payload: user }))
          .status,
      ).toBe(202);
      const r = await request(agent, port, "GET", `/socket.io/?EIO=4&transport=polling&sid=${sid}`);
      expect(r.body).toBe(`42["ping-tab","${user}"]`);
    }
    agent.destroy();
  });
});

describe("cluster-wide API", () => {
  it("pushes reach users on every worker and queries see all of them", async () => {
    const users = ["cw-1", "cw-2", "cw-3", "cw-4"];
    const sockets = await Promise.all(
      users.map(async (u) =>
        connectRegistered(server.publicUrl, await signToken(u, { rooms: ["team:*"] }), u),
      ),
    );
    for (const s of sockets)
      expect(await emitAck(s, "room:join", { room: "team:blue" })).toMatchObject({ ok: true });
    const got = sockets.map((s) => nextEvent(s, "team-news"));
    expect(
      (await server.api("POST", "/api/push", { room: "team:blue", event: "team-news", payload: 7 }))
        .status,
    ).toBe(202);
    expect(await Promise.all(got)).toEqual([7, 7, 7, 7]);

    const room = await (await server.api("GET", "/api/rooms/team:blue")).json();
    expect(room.sockets).toBe(4);
    expect(room.members.map((m: { userId: string }) => m.userId).sort()).toEqual(users);
    const status = await (await server.api("GET", "/api/status")).json();
    expect(status.workers).toHaveLength(2);
    expect(status.workers.every((w: { connections: number }) => w.connections > 0)).toBe(true);
  });
});

describe("a killed worker", () => {
  it("does not hold up cluster queries: the dead worker is listed as missing at once", async () => {
    const [victim] = await workerPids(server);
    process.kill(victim!, "SIGKILL");
    // A fresh connection: a pooled keep-alive one may belong to the killed worker.
    const fresh = new Agent();
    // A connection handed to the worker in the instant it dies is closed
    // (src/primary/handoff.ts), so an attempt may fail and is retried, each
    // with its own deadline; what is asserted is that the query that does
    // answer never waits on the dead worker.
    let res: Response | undefined;
    let elapsed = 0;
    for (let attempt = 0; attempt < 5 && !res; attempt++) {
      const t0 = Date.now();
      res = await fetch(`${server.apiUrl}/api/status`, {
        headers: { authorization: `Bearer ${TEST_API_KEY}` },
        dispatcher: fresh,
        signal: AbortSignal.timeout(4_000),
      } as RequestInit).catch(() => undefined);
      elapsed = Date.now() - t0;
    }
    if (!res) throw new Error("no /api/status answer in 5 attempts");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { workers: unknown[]; missingWorkers?: number[] };
    // Either the exit was already seen (one worker answers, one is missing) or
    // the query ran before it (both answered); never a wait for a timeout.
    expect(body.workers.length + (body.missingWorkers?.length ?? 0)).toBe(2);
    // The cluster adapter's own fetchSockets would wait 5 s for the dead worker.
    expect(elapsed).toBeLessThan(4_000);
    // Leave the cluster whole for the next test: the replacement is up and ready.
    while (
      (await fetch(`${server.apiUrl}/ready`, { dispatcher: fresh } as RequestInit)).status !== 200
    ) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await fresh.close();
  }, 30_000);

  it("is replaced, and its clients reconnect and register again", async () => {
    const token = await signToken("phoenix");
    const s = await connectRegistered(server.publicUrl, token, "phoenix", { reconnection: true });
    const before = await workerPids(server);
    expect(before).toHaveLength(2);
    for (const pid of before) process.kill(pid, "SIGKILL");
    await new Promise<void>((resolve) => s.io.once("reconnect", () => resolve()));
    expect(await emitAck(s, "register", { userId: "phoenix" })).toMatchObject({ ok: true });
    const got = nextEvent(s, "back");
    expect(
      (await server.api("POST", "/api/push", { userId: "phoenix", event: "back", payload: true }))
        .status,
    ).toBe(202);
    expect(await got).toBe(true);
    const after = await workerPids(server);
    expect(after).toHaveLength(2);
    expect(after.filter((p) => before.includes(p))).toEqual([]);
    await server.waitForOutput(/worker exited unexpectedly; restarting/);
  }, 60_000);
});
