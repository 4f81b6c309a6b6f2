import { SERVER_EVENTS } from "../shared/events.js";
import type { PushHandler } from "./client-types.js";

/** The server's own events (`server:disconnect`): not pushes, so not shown to `onAny`. */
const SERVER_OWN = new Set<string>(SERVER_EVENTS);

/**
 * The socket listener behind `client.on(event, handler)`: when the push asks
 * for an ack, the handler's return value (or what its promise resolves to) is
 * the ack, and a throw acks `{ ok: false, error: { code: "INTERNAL" } }`.
 */
export function pushListener<T>(handler: PushHandler<T>): (...args: unknown[]) => void {
  return (...args) => {
    const last = args[args.length - 1];
    const ack = typeof last === "function" ? (last as (res: unknown) => void) : undefined;
    let result: unknown;
    try {
      result = handler(args[0] as never);
    } catch (err) {
      result = Promise.reject(err);
    }
    if (!ack) return;
    Promise.resolve(result).then(ack, (err: unknown) =>
      ack({
        ok: false,
        error: { code: "INTERNAL", message: err instanceof Error ? err.message : String(err) },
      }),
    );
  };
}

/** The socket listener behind `client.onAny(handler)`: every push, without acks. */
export function anyPushListener(
  handler: (event: string, payload: unknown) => void,
): (event: string, ...args: unknown[]) => void {
  return (event, ...args) => {
    if (!SERVER_OWN.has(event)) handler(event, args[0]);
  };
}
