/**
 * socket-server's browser client: `import { createClient } from "socket-server/client"`,
 * or `<script type="module">` from the public port's `/client.js`.
 * Browser-safe: nothing here may import Node code (it is bundled by esbuild).
 */
export type { ErrorCode } from "../shared/errors.js";
export type {
  HistoryPosition,
  RoomPosition,
  ServerDisconnectNotice,
} from "../shared/events.js";
export { type BackoffOptions, backoffDelay, retryDelay } from "./backoff.js";
export { BoundedQueue, type OverflowPolicy } from "./bounded-queue.js";
export {
  AUTH_CODES,
  CLIENT_SIDE_CODES,
  ClientError,
  type ClientErrorCode,
  type ClientSideCode,
  RETRYABLE_CODES,
} from "./client-error.js";
export type {
  Client,
  ClientOptions,
  ClientState,
  PushHandler,
  RequestOptions,
  StateChange,
  TokenRequest,
} from "./client-types.js";
export { createClient } from "./create-client.js";
export type { RoomReset } from "./room-positions.js";
export { decodeTimeClaims, refreshDelayMs, type TimeClaims } from "./token.js";
