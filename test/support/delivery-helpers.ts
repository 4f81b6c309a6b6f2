import type { Socket } from "socket.io-client";
import { connect, emitAck } from "./client.js";
import { postOnFreshConnection } from "./server.js";

/**
 * Helpers for the delivery tests (acks, offline store, idempotency, batch).
 */

/**
 * POST on a connection of its own (no keep-alive pool): the API port hands
 * each new connection to the next worker in turn, so consecutive calls land
 * on different workers.
 */
export async function postFresh(
  apiUrl: string,
  path: string,
  body: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const answer = await postOnFreshConnection(apiUrl, path, body);
  if (answer.status === undefined) throw new Error(answer.error);
  return { status: answer.status, body: answer.body as Record<string, unknown> };
}

export function slotOf(socket: Socket): number {
  const sid = (socket.io as unknown as { engine: { id: string } }).engine.id;
  return Number.parseInt(sid.split("_")[0]!, 36);
}

/** Records every `event` a socket receives, from now on. */
export function record<T = unknown>(socket: Socket, event: string): T[] {
  const got: T[] = [];
  socket.on(event, (payload: T) => {
    got.push(payload);
  });
  return got;
}

export interface PresenceNotice {
  room: string;
  userId: string;
}

/** The `presence:join` or `presence:leave` notices a watcher gets about others (its own may still be on its way). */
export function presenceNotices(watcher: Socket, event: string, self: string): PresenceNotice[] {
  const got: PresenceNotice[] = [];
  watcher.on(event, (n: PresenceNotice) => {
    if (n.userId !== self) got.push(n);
  });
  return got;
}

/** Resolves once `list` has `n` entries (checked on each `event`). */
export function waitForCount(
  socket: Socket | Socket[],
  event: string,
  count: () => number,
  n: number,
  timeoutMs = 10_000,
): Promise<void> {
  const sockets = Array.isArray(socket) ? socket : [socket];
  return new Promise((resolve, reject) => {
    if (count() >= n) return resolve();
    const timer = setTimeout(
      () => reject(new Error(`only ${count()} of ${n} ${event} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const check = () => {
      if (count() < n) return;
      clearTimeout(timer);
      for (const s of sockets) s.off(event, check);
      resolve();
    };
    for (const s of sockets) s.on(event, check);
  });
}

export interface RegisterAck {
  ok: boolean;
  replayed?: number;
}

/** Connects, starts recording `event`, then registers (replays follow the ack). */
export async function connectAndRegister(
  url: string,
  token: string,
  userId: string,
  event: string,
): Promise<{ socket: Socket; got: unknown[]; ack: RegisterAck }> {
  const socket = await connect(url, token);
  const got = record(socket, event);
  const ack = await emitAck<RegisterAck>(socket, "register", { userId });
  return { socket, got, ack };
}

/**
 * Tabs of one user, one per url, each recording `event`, registered all at
 * once (they race for the stored messages): `replayed` is the sum the acks
 * report, `got` what the tabs received between them.
 */
export async function registerAtOnce(
  urls: string[],
  token: string,
  userId: string,
  event: string,
): Promise<{ sockets: Socket[]; got: unknown[]; replayed: number }> {
  const sockets = await Promise.all(urls.map((url) => connect(url, token)));
  const got: unknown[] = [];
  for (const socket of sockets) {
    socket.on(event, (payload: unknown) => {
      got.push(payload);
    });
  }
  const acks = await Promise.all(
    sockets.map((socket) => emitAck<RegisterAck>(socket, "register", { userId })),
  );
  return { sockets, got, replayed: acks.reduce((sum, ack) => sum + (ack.replayed ?? 0), 0) };
}

/** Polls GET /ready until 200 (after a worker restart, readiness is what there is to wait on). */
export async function waitReady(apiUrl: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 50; Date.now() < deadline; delay = Math.min(delay * 2, 500)) {
    const res = await fetch(`${apiUrl}/ready`).catch(() => undefined);
    if (res?.status === 200) return;
    await new Promise((r) => setTimeout(r, delay));
  }
  throw new Error(`not ready within ${timeoutMs} ms`);
}
