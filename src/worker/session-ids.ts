import { randomFillSync } from "node:crypto";
import { sidForSlot } from "../shared/ipc.js";

/** 120 bits per session id, as Engine.IO's own. */
const ID_BYTES = 15;
/** Ids per refill: one call into OpenSSL per 256 sessions, not one each. */
const POOL_IDS = 256;

/**
 * Engine.IO session ids for this worker's slot (`<slot>_<random>`). The
 * random part comes from a pool filled by the CSPRNG, each byte used once
 * (as `base64id`, Engine.IO's default, does): drawing 15 bytes per
 * handshake cost 13 µs of a connection's ~1 ms in a connect burst.
 */
export function createSessionIds(slot: number): () => string {
  const pool = Buffer.alloc(ID_BYTES * POOL_IDS);
  let next = POOL_IDS;
  return () => {
    if (next === POOL_IDS) {
      randomFillSync(pool);
      next = 0;
    }
    const start = next++ * ID_BYTES;
    return sidForSlot(slot, pool.toString("base64url", start, start + ID_BYTES));
  };
}
