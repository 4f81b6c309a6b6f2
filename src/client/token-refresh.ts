import type { Socket } from "socket.io-client";
import { errorOf, isAck } from "./acks.js";
import { AUTH_CODES, type ClientErrorCode } from "./client-error.js";
import type { TokenRequest } from "./client-types.js";
import { decodeTimeClaims, refreshDelayMs } from "./token.js";

/**
 * The client's tokens: asks `getToken` on every connection attempt, refreshes
 * the token (`auth:refresh`, no reconnect) shortly before it expires, and
 * allows one more `getToken` after a refusal before the client gives up.
 */

export interface TokenRefreshDeps {
  /** Its `auth` option is this module's `auth`. */
  socket: Socket;
  getToken: (req: TokenRequest) => string | Promise<string>;
  isRegistered: () => boolean;
  /** A refresh was refused twice in a row: the client gives up. */
  onRefused: (code: ClientErrorCode, reason: string) => void;
  /** How long to wait for the `auth:refresh` ack. */
  ackTimeoutMs: number;
  /** Refresh this long before `exp` (at most a third of the remaining lifetime). */
  leadMs: number;
}

export interface TokenRefresh {
  /** socket.io-client's `auth` callback: a token for this connection attempt. */
  auth(cb: (data: object) => void): void;
  /** Why the last `getToken` failed (undefined once it succeeded). */
  readonly fetchError: unknown;
  /** When the current token expires (ms since the epoch), or null. */
  readonly expiresAt: number | null;
  /** After a registration: refresh before the current token expires. */
  schedule(): void;
  cancel(): void;
  /**
   * The handshake refused the token: true if `getToken` may be asked once
   * more (the next attempt asks with reason `auth-retry`), false to give up.
   */
  retryHandshake(): boolean;
  /** A token was accepted, or the client starts afresh: refusals count from zero. */
  resetRefusals(): void;
}

export function createTokenRefresh(deps: TokenRefreshDeps): TokenRefresh {
  const { socket } = deps;
  let currentToken: string | undefined;
  let fetchError: unknown;
  let everConnected = false;
  /** Consecutive token refusals; one more `getToken` is allowed, then the client fails. */
  let refusals = 0;
  let retryPending = false;
  let timer: ReturnType<typeof setTimeout> | undefined;

  function expiresAt(): number | null {
    const exp = currentToken ? decodeTimeClaims(currentToken)?.exp : undefined;
    return exp === undefined ? null : exp * 1000;
  }

  function schedule(delayMs?: number): void {
    clearTimeout(timer);
    const exp = currentToken ? decodeTimeClaims(currentToken)?.exp : undefined;
    if (exp === undefined) return;
    const delay = delayMs ?? refreshDelayMs(exp, Date.now(), deps.leadMs);
    timer = setTimeout(() => void refresh("refresh"), delay);
  }

  /** Retry a refresh that got no verdict, well before the token runs out. */
  function refreshLater(): void {
    const at = expiresAt();
    const remaining = at === null ? 5_000 : at - Date.now();
    schedule(Math.max(250, Math.min(5_000, remaining / 2)));
  }

  async function refresh(reason: TokenRequest["reason"]): Promise<void> {
    if (!deps.isRegistered()) return;
    const sid = socket.id;
    let token: string;
    try {
      token = await deps.getToken({ reason });
    } catch {
      return refreshLater();
    }
    if (!deps.isRegistered() || socket.id !== sid) return; // a reconnect fetched its own token
    socket
      .timeout(deps.ackTimeoutMs)
      .emit("auth:refresh", { token }, (err: Error | null, ack: unknown) => {
        if (socket.id !== sid || !deps.isRegistered()) return;
        // No answer: an old server without auth:refresh, or a slow one. If the
        // token runs out, the server disconnects and the reconnect gets a new one.
        if (err) return refreshLater();
        if (isAck(ack) && ack.ok) {
          currentToken = token;
          refusals = 0;
          return schedule();
        }
        const { code } = errorOf(ack);
        if (AUTH_CODES.has(code) || code === "FORBIDDEN") {
          if (refusals >= 1) return deps.onRefused(code, `token refresh refused (${code})`);
          refusals += 1;
          return void refresh("auth-retry");
        }
        refreshLater();
      });
  }

  socket.on("connect", () => {
    everConnected = true;
  });

  return {
    auth(cb) {
      const reason: TokenRequest["reason"] = retryPending
        ? "auth-retry"
        : everConnected
          ? "reconnect"
          : "connect";
      retryPending = false;
      Promise.resolve()
        .then(() => deps.getToken({ reason }))
        .then(
          (token) => {
            fetchError = undefined;
            currentToken = token;
            cb({ token });
          },
          (err: unknown) => {
            // The server answers AUTH_MISSING; fetchError marks it as ours, to retry later.
            fetchError = err;
            cb({});
          },
        );
    },
    get fetchError() {
      return fetchError;
    },
    get expiresAt() {
      return expiresAt();
    },
    schedule: () => schedule(),
    cancel: () => clearTimeout(timer),
    retryHandshake() {
      if (refusals >= 1) return false;
      refusals += 1;
      retryPending = true;
      return true;
    },
    resetRefusals() {
      refusals = 0;
    },
  };
}
