import WebSocket from "ws";
import { RawWebSocket } from "./raw-ws.mjs";
import { nextSourceAddress } from "./source-addresses.mjs";

/**
 * A light Socket.IO v4 client for load generation: websocket transport only,
 * namespace "/", JSON packets only. It does what a browser client does on the
 * wire and nothing else, so that one load-generator process can hold 10k
 * sockets and read ~100k messages per second.
 *
 * Engine.IO v4: `0{json}` open, `2` ping → `3` pong, `4…` message, `1` close.
 * Socket.IO v4 inside a `4` message: `0{auth}` connect, `0{"sid"}` connected,
 * `4{"message","data"}` connect_error, `2[id][…]` event, `3<id>[…]` ack,
 * `1` disconnect. bench/self-check.mjs compares it with socket.io-client.
 *
 * The WebSocket underneath is bench/lib/raw-ws.mjs (default, cheapest) or the
 * `ws` library (BENCH_CLIENT=ws).
 */

const PING = 50; // "2"
const OPEN = 48; // "0"
const CLOSE = 49; // "1"
const MESSAGE = 52; // "4"

export const CLIENT_KIND = process.env.BENCH_CLIENT === "ws" ? "ws" : "raw";

/** The `ws` library behind the same small interface as RawWebSocket. */
function wsTransport(url, timeoutMs) {
  const ws = new WebSocket(url, {
    perMessageDeflate: false,
    skipUTF8Validation: true,
    localAddress: nextSourceAddress(new URL(url).hostname),
    handshakeTimeout: timeoutMs,
  });
  const t = {
    onOpen: undefined,
    onMessage: undefined,
    onClose: undefined,
    get readyState() {
      return ws.readyState;
    },
    send: (text) => ws.readyState === WebSocket.OPEN && ws.send(text),
    close: () => ws.close(),
    terminate: () => ws.terminate(),
  };
  ws.on("open", () => t.onOpen?.());
  ws.on("message", (data) => t.onMessage?.(typeof data === "string" ? data : data.toString()));
  ws.on("error", () => {});
  ws.on("close", (code) => t.onClose?.(code, `closed ${code}`));
  return t;
}

export class HandshakeError extends Error {
  constructor(kind, message, data) {
    super(message);
    /** "refused" (connect_error), "closed", "error" or "timeout". */
    this.kind = kind;
    this.data = data;
  }
}

/** ws://host:port/socket.io/?EIO=4&transport=websocket */
export function socketIoUrl(httpUrl) {
  return `${httpUrl.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`;
}

export class BenchClient {
  /**
   * @param {string} url from socketIoUrl()
   * @param {Record<string, unknown>} auth the CONNECT payload (`{ token }`)
   * @param {(event: string, payload: unknown, client: BenchClient) => void} [onEvent]
   * @param {"raw" | "ws"} [kind]
   */
  constructor(url, auth, onEvent, kind) {
    this.url = url;
    /** "raw" or "ws"; CLIENT_KIND when not given. */
    this.kind = kind;
    this.auth = auth;
    this.onEvent = onEvent;
    this.ws = undefined;
    this.sid = undefined;
    this.connected = false;
    this.nextAck = 0;
    this.acks = undefined;
    this.closedReason = undefined;
    this.received = 0;
  }

  /** Opens the socket and joins namespace "/"; resolves once the server accepts. */
  connect(timeoutMs = 20_000) {
    const started = performance.now();
    return new Promise((resolve, reject) => {
      let settled = false;
      const done = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          this.terminate();
          reject(err);
        } else {
          resolve(this);
        }
      };
      const timer = setTimeout(
        () => done(new HandshakeError("timeout", `no CONNECT within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const ws =
        (this.kind ?? CLIENT_KIND) === "ws"
          ? wsTransport(this.url, timeoutMs)
          : new RawWebSocket(this.url, { timeoutMs });
      this.ws = ws;
      ws.onMessage = (s) => {
        const t = s.charCodeAt(0);
        if (t === MESSAGE) {
          this.onPacket(s, done);
        } else if (t === PING) {
          ws.send("3");
        } else if (t === OPEN) {
          this.sid = JSON.parse(s.slice(1)).sid;
          ws.send(`40${JSON.stringify(this.auth)}`);
        } else if (t === CLOSE) {
          ws.close();
        }
      };
      ws.onClose = (code, why) => {
        this.connected = false;
        this.closedReason ??= why ?? `closed ${code}`;
        // Where it stopped tells a lost upgrade from a lost namespace CONNECT.
        const stage = this.sid
          ? `after the open packet (sid ${this.sid})`
          : "before the open packet";
        const ms = Math.round(performance.now() - started);
        done(
          new HandshakeError(
            "closed",
            `${this.closedReason} ${stage}, before CONNECT, at ${ms} ms`,
          ),
        );
        if (this.acks) {
          for (const a of this.acks.values()) a.reject(new Error(this.closedReason));
          this.acks.clear();
        }
      };
    });
  }

  onPacket(s, done) {
    const type = s.charCodeAt(1) - 48;
    if (type === 2) {
      // EVENT: 42[name, payload] or 42<id>[name, payload] (the server wants an ack)
      this.received += 1;
      let i = 2;
      while (s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++;
      const args = JSON.parse(s.slice(i));
      if (i > 2) this.ws.send(`43${s.slice(2, i)}[]`);
      this.onEvent?.(args[0], args[1], this);
    } else if (type === 3) {
      let i = 2;
      while (s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++;
      const id = Number(s.slice(2, i));
      const pending = this.acks?.get(id);
      if (pending) {
        this.acks.delete(id);
        clearTimeout(pending.timer);
        pending.resolve(JSON.parse(s.slice(i))[0]);
      }
    } else if (type === 0) {
      this.connected = true;
      done();
    } else if (type === 4) {
      const err = JSON.parse(s.slice(2));
      done(new HandshakeError("refused", err.message, err.data));
    } else if (type === 1) {
      this.closedReason = "server disconnect";
      this.ws.close();
    }
  }

  emit(event, payload) {
    this.ws.send(`42${JSON.stringify([event, payload])}`);
  }

  /** Emits with an ack id; resolves with the first ack argument. */
  emitAck(event, payload, timeoutMs = 20_000) {
    return new Promise((resolve, reject) => {
      if (!this.connected) return reject(new Error("not connected"));
      const id = this.nextAck++;
      this.acks ??= new Map();
      const timer = setTimeout(() => {
        this.acks.delete(id);
        reject(new Error(`no ack for ${event} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.acks.set(id, { resolve, reject, timer });
      this.ws.send(`42${id}${JSON.stringify([event, payload])}`);
    });
  }

  /** A clean Socket.IO disconnect, then the websocket close. */
  close() {
    if (!this.ws) return;
    if (this.ws.readyState === 1) {
      if (this.connected) this.ws.send("41");
      this.ws.close();
    } else {
      this.ws.terminate();
    }
  }

  terminate() {
    this.ws?.terminate();
  }
}
