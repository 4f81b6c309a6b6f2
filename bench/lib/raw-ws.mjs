import net from "node:net";
import { nextSourceAddress } from "./source-addresses.mjs";

/**
 * The smallest WebSocket client the load generator needs, on a bare TCP
 * socket: the HTTP upgrade, then frames. It exists because the client side
 * must not be the bottleneck: with 10k sockets receiving 100k messages per
 * second, the `ws` library's per-connection HTTP request, per-message stream
 * machinery and masking cost more CPU than the server under test spends.
 *
 * What it leaves out, on purpose: Sec-WebSocket-Accept is not checked (the
 * server is ours), no extensions, and frames to the server are masked with a
 * zero key (valid framing, so no per-byte XOR; servers cannot tell).
 * bench/self-check.mjs checks it against socket.io-client.
 *
 * Callbacks instead of events: onOpen(), onMessage(text), onClose(code, why).
 */

const CRLF2 = Buffer.from("\r\n\r\n");
let keyCounter = 0;
// One read buffer for every socket (`onread`): data is parsed as soon as it
// is read, so no socket needs its own 64 KB buffer and no stream machinery
// runs per read. A partial frame is copied out before the next read.
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

export class RawWebSocket {
  constructor(url, { timeoutMs = 20_000 } = {}) {
    const u = new URL(url);
    this.readyState = 0; // CONNECTING, OPEN 1, CLOSING 2, CLOSED 3
    this.onOpen = undefined;
    this.onMessage = undefined;
    this.onClose = undefined;
    this.pending = undefined; // bytes of an incomplete frame
    this.fragments = undefined; // payloads of a fragmented message
    const key = Buffer.alloc(16);
    key.writeUInt32BE(++keyCounter, 12);
    key.writeUInt32BE(process.pid, 0);
    this.socket = net.connect({
      host: u.hostname,
      port: Number(u.port),
      localAddress: nextSourceAddress(u.hostname),
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n, buf) => this.onData(buf.subarray(0, n)) },
    });
    this.socket.setTimeout(timeoutMs, () => this.fail(1006, "timeout"));
    this.socket.on("connect", () => {
      this.socket.write(
        `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n` +
          "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Key: ${key.toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.socket.on("error", (err) => this.fail(1006, err.message));
    this.socket.on("close", () => this.fail(1006, "connection closed"));
  }

  onData(chunk) {
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    if (this.readyState === 0) {
      const end = buf.indexOf(CRLF2);
      if (end === -1) {
        this.pending = Buffer.from(buf);
        return;
      }
      const status = buf.toString("latin1", 0, buf.indexOf("\r\n"));
      if (!status.startsWith("HTTP/1.1 101")) return this.fail(1006, `upgrade refused: ${status}`);
      this.readyState = 1;
      this.socket.setTimeout(0);
      this.onOpen?.();
      buf = buf.subarray(end + 4);
    }
    let off = 0;
    while (buf.length - off >= 2) {
      const b0 = buf[off];
      const b1 = buf[off + 1];
      let len = b1 & 0x7f;
      let head = 2;
      if (len === 126) {
        if (buf.length - off < 4) break;
        len = buf.readUInt16BE(off + 2);
        head = 4;
      } else if (len === 127) {
        if (buf.length - off < 10) break;
        len = Number(buf.readBigUInt64BE(off + 2));
        head = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      if (masked) head += 4;
      if (buf.length - off < head + len) break;
      let payload = buf.subarray(off + head, off + head + len);
      if (masked) {
        const m = buf.subarray(off + head - 4, off + head);
        payload = Buffer.from(payload);
        for (let i = 0; i < payload.length; i++) payload[i] ^= m[i & 3];
      }
      off += head + len;
      this.onFrame(b0 & 0x80, b0 & 0x0f, payload);
      if (this.readyState === 3) return;
    }
    if (off < buf.length) this.pending = Buffer.from(buf.subarray(off));
  }

  onFrame(fin, opcode, payload) {
    if (opcode === 0x1 || opcode === 0x2 || opcode === 0x0) {
      if (!fin || this.fragments) {
        this.fragments ??= [];
        this.fragments.push(Buffer.from(payload));
        if (!fin) return;
        payload = Buffer.concat(this.fragments);
        this.fragments = undefined;
      }
      this.onMessage?.(payload.toString());
    } else if (opcode === 0x9) {
      this.writeFrame(0xa, payload);
    } else if (opcode === 0x8) {
      if (this.readyState === 1) this.writeFrame(0x8, payload.subarray(0, 2));
      this.readyState = 2;
      this.socket.end();
    }
  }

  /** A masked frame with a zero key: the payload goes out as is. */
  writeFrame(opcode, payload) {
    const len = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
    const head = len < 126 ? 6 : len < 65536 ? 8 : 14;
    const frame = Buffer.allocUnsafe(head + len);
    frame[0] = 0x80 | opcode;
    if (len < 126) {
      frame[1] = 0x80 | len;
    } else if (len < 65536) {
      frame[1] = 0x80 | 126;
      frame.writeUInt16BE(len, 2);
    } else {
      frame[1] = 0x80 | 127;
      frame.writeBigUInt64BE(BigInt(len), 2);
    }
    frame.writeUInt32BE(0, head - 4);
    if (typeof payload === "string") frame.write(payload, head);
    else payload.copy(frame, head);
    this.socket.write(frame);
  }

  send(text) {
    if (this.readyState !== 1) return;
    this.writeFrame(0x1, text);
  }

  close() {
    if (this.readyState === 1) {
      this.writeFrame(0x8, Buffer.from([0x03, 0xe8]));
      this.readyState = 2;
      this.socket.end();
    } else {
      this.terminate();
    }
  }

  terminate() {
    this.socket.destroy();
    this.fail(1006, "terminated");
  }

  fail(code, why) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.socket.destroy();
    this.onClose?.(code, why);
  }
}
