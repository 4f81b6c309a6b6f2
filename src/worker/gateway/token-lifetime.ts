import type { Logger } from "pino";
import type { Config } from "../../shared/config.js";
import { ackError } from "../../shared/errors.js";
import type { Ack, RefreshOk } from "../../shared/events.js";
import type { AuthService } from "../auth/auth-service.js";
import { createDeadlines } from "../deadlines.js";
import { disconnectWith, type GatewayServer, type GatewaySocket } from "./gateway.js";

/**
 * Token lifetime on a live socket: `auth:refresh` swaps the socket's token
 * for a newer one of the same `sub` (verified, revocation checked), and a
 * socket whose token expires is disconnected with AUTH_EXPIRED once
 * TOKEN_EXPIRY_GRACE_MS has passed after `exp`. The expiries of all sockets
 * share one timer (deadlines.ts), at most EXPIRY_RESOLUTION_MS late; the
 * handlers are shared by every socket (Socket.IO calls them with the socket
 * as `this`). Per socket, only a Set entry stays.
 */

const EXPIRY_RESOLUTION_MS = 100;

export function attachTokenLifetime(deps: {
  io: GatewayServer;
  cfg: Config;
  log: Logger;
  /** Verification with the revocation list applied (AUTH_REVOKED). */
  auth: AuthService;
}): void {
  const { io, cfg, auth } = deps;
  const log = deps.log.child({ module: "token-lifetime" });
  const dueOf = (exp: number) => exp * 1000 + cfg.TOKEN_EXPIRY_GRACE_MS;
  const expiries = createDeadlines<GatewaySocket>({
    resolutionMs: EXPIRY_RESOLUTION_MS,
    onDue: (socket) => {
      if (!socket.connected) return;
      log.debug({ socketId: socket.id }, "token expired; disconnecting");
      disconnectWith(socket, "AUTH_EXPIRED");
    },
    onError: (err) => log.error({ err }, "token expiry failed"),
  });
  const watch = (socket: GatewaySocket) => {
    if (socket.data.exp !== undefined) expiries.add(socket, dueOf(socket.data.exp));
  };
  const unwatch = (socket: GatewaySocket) => {
    if (socket.data.exp !== undefined) expiries.delete(socket, dueOf(socket.data.exp));
  };

  function onDisconnect(this: GatewaySocket) {
    unwatch(this);
  }

  function onRefresh(this: GatewaySocket, req: unknown, ack?: unknown) {
    refresh(this, req, ack);
  }

  function refresh(socket: GatewaySocket, req: unknown, ack?: unknown) {
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
        unwatch(socket);
        const d = socket.data;
        d.exp = r.claims.exp;
        d.iat = r.claims.iat;
        d.roomClaims = r.claims.rooms;
        if (r.claims.jti) d.jti = r.claims.jti;
        else delete d.jti;
        watch(socket);
        reply({ ok: true, expiresAt: r.claims.exp });
      },
      (err: unknown) => {
        log.error({ err, socketId: socket.id }, "token verification failed unexpectedly");
        reply(ackError("OVERLOADED"));
      },
    );
  }

  io.on("connection", (socket) => {
    watch(socket);
    socket.on("disconnect", onDisconnect);
    socket.on("auth:refresh", onRefresh);
  });
}
