import type { Logger } from "pino";
import type { Config } from "../../shared/config.js";
import { disabledForwarder } from "./backend-contract.js";
import type { ForwardService } from "./forward-service.js";
import { createHttpForwarder } from "./http-forwarder.js";
import { createStreamForwarder } from "./stream-forwarder.js";

/**
 * The forwarder configuration asks for: a Redis Stream with
 * FORWARD_TRANSPORT=redis-stream (config guarantees a Redis target), HTTP when
 * BACKEND_URL is set, otherwise every event is answered FORWARDING_DISABLED.
 */
export function createForwarder(deps: { cfg: Config; log: Logger }): ForwardService {
  const { cfg, log } = deps;
  if (cfg.FORWARD_TRANSPORT === "redis-stream" && cfg.redis) {
    return createStreamForwarder({ cfg, log, target: cfg.redis });
  }
  if (cfg.BACKEND_URL) return createHttpForwarder({ cfg, log, backendUrl: cfg.BACKEND_URL });
  return {
    forward: disabledForwarder.forward,
    forwardLifecycle: disabledForwarder.forward,
    status: () => ({ transport: "disabled", breaker: null, inFlight: 0 }),
    drain: async () => true,
    close: async () => {},
  };
}
