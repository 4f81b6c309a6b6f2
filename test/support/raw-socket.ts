import WebSocket from "ws";

/**
 * A Socket.IO v4 client spoken by hand over a raw websocket (Engine.IO v4
 * framing), for hostile-input tests: it can send frames no well-behaved
 * client would (malformed packets, reserved event names, absurd attachment
 * counts) and see exactly what the server answers or whether it hangs up.
 */

export interface RawClose {
  code: number;
  reason: string;
}

export class RawSocket {
  private readonly frames: string[] = [];
  private readonly waiters: { match: (f: string) => boolean; resolve: (f: string) => void }[] = [];
  readonly closed: Promise<RawClose>;
  private nextAckId = 1;

  private constructor(private readonly ws: WebSocket) {
    ws.on("message", (data: WebSocket.RawData, isBinary: boolean) => {
      if (isBinary) return;
      const text = data.toString();
      if (text === "2") {
        ws.send("3"); // Engine.IO ping → pong
        return;
      }
      const w = this.waiters.findIndex((x) => x.match(text));
      if (w >= 0) this.waiters.splice(w, 1)[0]!.resolve(text);
      else this.frames.push(text);
    });
    this.closed = new Promise((resolve) => {
      ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() }));
    });
  }

  /** Opens the websocket and waits for Engine.IO's open packet. */
  static async open(
    publicUrl: string,
    headers: Record<string, string> = {},
    timeoutMs = 5_000,
  ): Promise<RawSocket> {
    const url = `${publicUrl.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`;
    const ws = new WebSocket(url, { headers });
    const s = new RawSocket(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) =>
        reject(new Error(`HTTP ${res.statusCode} on the websocket upgrade`)),
      );
      ws.once("open", () => resolve());
    });
    await s.next((f) => f.startsWith("0{"), timeoutMs);
    return s;
  }

  /** Opens and sends the namespace CONNECT with this auth; resolves with the answer frame. */
  static async connect(
    publicUrl: string,
    auth: unknown,
    timeoutMs = 5_000,
  ): Promise<{ s: RawSocket; answer: string }> {
    const s = await RawSocket.open(publicUrl, {}, timeoutMs);
    s.send(`40${JSON.stringify(auth)}`);
    const answer = await s.next((f) => f.startsWith("40") || f.startsWith("44"), timeoutMs);
    return { s, answer };
  }

  send(frame: string | Buffer): void {
    this.ws.send(frame);
  }

  /** The next frame that matches (already received or future). */
  next(match: (f: string) => boolean, timeoutMs = 5_000): Promise<string> {
    const i = this.frames.findIndex(match);
    if (i >= 0) return Promise.resolve(this.frames.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no matching frame in time")), timeoutMs);
      this.waiters.push({
        match,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
      });
    });
  }

  /** Sends `42<id>[event, ...args]` and resolves with the first ack argument. */
  async emit(event: unknown, ...args: unknown[]): Promise<unknown> {
    const id = this.nextAckId++;
    this.send(`42${id}${JSON.stringify([event, ...args])}`);
    return this.ack(id);
  }

  /** Sends a raw event frame with an ack id; resolves with the first ack argument. */
  async emitRaw(bodyAfterId: string): Promise<unknown> {
    const id = this.nextAckId++;
    this.send(`42${id}${bodyAfterId}`);
    return this.ack(id);
  }

  private async ack(id: number): Promise<unknown> {
    const frame = await this.next((f) => f.startsWith(`43${id}[`));
    return (JSON.parse(frame.slice(`43${id}`.length)) as unknown[])[0];
  }

  close(): void {
    this.ws.terminate();
  }
}
