import type { Logger } from "pino";
import type { Config } from "../../shared/config.js";
import { ackError } from "../../shared/errors.js";
import type { Ack, RefreshOk } from "../../shared/events.js";
import type { AuthService } from "../auth/auth-service.js";
import { disconnectWith, type GatewayServer, type GatewaySocket } from "./gateway.js";

/**
 * Token lifetime on a live socket: `auth:refresh` swaps the socket's token
 * for a newer one of the same `sub` (verified, revocation checked), and a
 * socket whose token expires is disconnected with AUTH_EXPIRED once
 * TOKEN_EXPIRY_GRACE_MS has passed after `exp`. One timer per socket,
 * cleared on disconnect.
 */

/** setTimeout fires at once past 2^31-1 ms (~24.8 days): longer waits are chained. */
const MAX_TIMER_MS = 2_147_483_647;

export function attachTokenLifetime(deps: {
  io: GatewayServer;
  cfg: Config;
  log: Logger;
  /** Verification with the revocation list applied (AUTH_REVOKED). */
  auth: AuthService;
}): { expiring: () => number } {
  const { io, cfg, auth } = deps;
  const log = deps.log.child({ module: "token-lifetime" });
  const timers = new Map<string, NodeJS.Timeout>();

  const schedule = (socket: GatewaySocket) => {
    clearTimeout(timers.get(socket.id));
    timers.delete(socket.id);
    const exp = socket.data.exp;
    if (exp === undefined) return;
    const due = exp * 1000 + cfg.TOKEN_EXPIRY_GRACE_MS;
    const wait = due - Date.now();
    const timer = setTimeout(
      () => {
        timers.delete(socket.id);
        if (!socket.connected) return;
        if (wait > MAX_TIMER_MS) return schedule(socket);
        log.debug({ socketId: socket.id }, "token expired; disconnecting");
        disconnectWith(socket, "AUTH_EXPIRED");
      },
      Math.max(0, Math.min(wait, MAX_TIMER_MS)),
    );
    timers.set(socket.id, timer);
  };

  io.on("connection", (socket) => {
    schedule(socket);
    socket.on("disconnect", () => {
      clearTimeout(timers.get(socket.id));
      timers.delete(socket.id);
    });
    socket.on("auth:refresh", (req: unknown, ack?: unknown) => {
      const reply = typeof ack === "function" ? (ack as (r: Ack<RefreshOk>) => void) : () => {};
      const token = (req as { token?: unknown } | null)?.token;
      if (typeof token !== "string" || token.length === 0) {
        reply(ackError("INVALID_PAYLOAD", "auth:refresh needs { token: string }"));
        return;
      }
      auth.verify(token).then(
        (r) => {
          if (!socket.connected) return;
          if (!r.ok) return reply(ackError(r.code));
          if (r.claims.sub !== socket.data.sub) {
            return reply(ackError("FORBIDDEN", "the new token is for another sub"));
          }
          const d = socket.data;
          d.exp = r.claims.exp;
          d.iat = r.claims.iat;
          d.roomClaims = r.claims.rooms;
          if (r.claims.jti) d.jti = r.claims.jti;
          else delete d.jti;
          schedule(socket);
          reply({ ok: true, expiresAt: r.claims.exp });
        },
        (err: unknown) => {
          log.error({ err, socketId: socket.id }, "token verification failed unexpectedly");
          reply(ackError("OVERLOADED"));
        },
      );
    });
  });
  return { expiring: () => timers.size };
}
