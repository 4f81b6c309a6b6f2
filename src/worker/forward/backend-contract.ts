import { type AckError, ackError } from "../../shared/errors.js";

/**
 * The worker's contract with the backend for client events: what is sent
 * (CONTRACT: forwarding, docs/http-api.md) and what comes back. The gateway calls a
 * `Forwarder`; forward/ implements it over HTTP or a stream.
 */

/** What is sent to the backend for a client event (CONTRACT: forwarding). */
export interface ForwardedEvent {
  id: string;
  event: string;
  payload: unknown;
  userId: string;
  socketId: string;
  rooms: string[];
  receivedAt: string;
}

export type ForwardReply = { ok: true; data: unknown } | AckError;

export interface Forwarder {
  forward(e: ForwardedEvent): Promise<ForwardReply>;
}

export const disabledForwarder: Forwarder = {
  forward: async () => ackError("FORWARDING_DISABLED"),
};
