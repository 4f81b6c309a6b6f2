import http from "node:http";

/**
 * Raw Engine.IO long-polling requests, each on a connection of its own from a
 * chosen loopback source address: with SO_REUSEPORT the kernel picks the
 * worker that accepts a connection by its addresses and ports, so requests
 * from many sources land on every worker, owners and non-owners alike.
 */

export interface PollAnswer {
  status?: number;
  body?: string;
  error?: string;
  ms: number;
}

export function poll(
  port: number,
  opts: { sid?: string; method?: "GET" | "POST"; body?: string; from?: string; timeoutMs?: number },
): Promise<PollAnswer> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const path = `/socket.io/?EIO=4&transport=polling${opts.sid ? `&sid=${opts.sid}` : ""}`;
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: opts.method ?? "GET",
        agent: false,
        localAddress: opts.from,
        timeout: opts.timeoutMs ?? 10_000,
        headers: opts.body ? { "content-type": "text/plain;charset=UTF-8" } : {},
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, ms: Date.now() - t0 }));
        res.on("error", (err) => resolve({ error: err.message, ms: Date.now() - t0 }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("hung")));
    req.on("error", (err) => resolve({ error: err.message, ms: Date.now() - t0 }));
    req.end(opts.body);
  });
}

/** A new polling session; its sid names the owning worker's slot (`<slot>_…`). */
export async function handshake(port: number, from?: string): Promise<string> {
  const r = await poll(port, { from });
  if (r.status !== 200 || !r.body) throw new Error(`handshake: ${r.status} ${r.error ?? r.body}`);
  return (JSON.parse(r.body.slice(1)) as { sid: string }).sid;
}

export const slotOfSid = (sid: string) => Number.parseInt(sid.split("_")[0]!, 36);

/**
 * A whole Socket.IO connect over long-polling, as socket.io-client makes it:
 * the handshake, then the namespace CONNECT posted while a GET waits for the
 * answer. Resolves with the session's sid once the answer is CONNECT
 * (`40{"sid":…}`); rejects with what came instead.
 */
export async function pollingConnect(port: number, auth: unknown, timeoutMs = 10_000) {
  const sid = await handshake(port);
  const answer = poll(port, { sid, timeoutMs });
  const posted = await poll(port, {
    sid,
    method: "POST",
    body: `40${JSON.stringify(auth)}`,
    timeoutMs,
  });
  if (posted.status !== 200) throw new Error(`CONNECT post: ${posted.status} ${posted.error}`);
  const got = await answer;
  const packets = got.body?.split("\x1e") ?? [];
  if (!packets.some((p) => p.startsWith('40{"sid":'))) {
    throw new Error(`no CONNECT answer: ${got.status} ${got.error ?? got.body}`);
  }
  return {
    sid,
    /** Closes the session (Engine.IO close packet), as the client's close() does. */
    close: () => poll(port, { sid, method: "POST", body: "1", timeoutMs }),
  };
}

/** Loopback source addresses 127.0.0.2, 127.0.0.3, … */
export const source = (i: number) => `127.0.${Math.floor(i / 250)}.${(i % 250) + 2}`;

/** Sessions until there is one on every slot in `slots`, keyed by slot. */
export async function sessionsOn(port: number, slots: number[]): Promise<Map<number, string>> {
  const found = new Map<number, string>();
  for (let i = 0; i < 200 && found.size < slots.length; i++) {
    const sid = await handshake(port, source(i));
    if (slots.includes(slotOfSid(sid)) && !found.has(slotOfSid(sid)))
      found.set(slotOfSid(sid), sid);
  }
  if (found.size < slots.length) throw new Error(`no session on every slot of ${slots}`);
  return found;
}
