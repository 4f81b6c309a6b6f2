import { io, type Socket } from "socket.io-client";

export type TestSocket = Socket;

export interface ConnectOptions {
  transports?: ("websocket" | "polling")[];
  upgrade?: boolean;
  reconnection?: boolean;
  forceNew?: boolean;
}

const open = new Set<Socket>();

/** Closes every socket the helpers opened (call in afterEach). */
export function closeAllClients(): void {
  for (const s of open) s.close();
  open.clear();
}

/** A socket.io-client socket; resolves on connect, rejects with the connect_error. */
export function connect(
  url: string,
  token: string | undefined,
  opts: ConnectOptions = {},
): Promise<Socket> {
  const socket = io(url, {
    auth: token === undefined ? {} : { token },
    transports: opts.transports ?? ["websocket"],
    upgrade: opts.upgrade ?? true,
    reconnection: opts.reconnection ?? false,
    forceNew: opts.forceNew ?? true,
    timeout: 10_000,
  });
  open.add(socket);
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      socket.off("connect", onConnect);
      socket.close();
      reject(err);
    };
    // Only the first connection attempt settles this; later reconnect errors are the test's.
    const onConnect = () => {
      socket.off("connect_error", onError);
      resolve(socket);
    };
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
  });
}

export function emitAck<T = unknown>(
  socket: Socket,
  event: string,
  ...args: unknown[]
): Promise<T> {
  return socket.timeout(10_000).emitWithAck(event, ...args) as Promise<T>;
}

/** Connects and registers as `userId`. */
export async function connectRegistered(
  url: string,
  token: string,
  userId: string,
  opts: ConnectOptions = {},
) {
  const socket = await connect(url, token, opts);
  const ack = await emitAck<{ ok: boolean }>(socket, "register", { userId });
  if (!ack.ok) throw new Error(`register failed: ${JSON.stringify(ack)}`);
  return socket;
}

/** Resolves with the next `event` on the socket. */
export function nextEvent<T = unknown>(
  socket: Socket,
  event: string,
  timeoutMs = 10_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ${event} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.once(event, (data: T) => {
      clearTimeout(timer);
      resolve(data);
    });
  });
}
