import type http from "node:http";
import { startStalledRequestChecks } from "./node-internals.js";

/**
 * Closes stalled HTTP connections (headers or body not arriving) on a server
 * that receives its sockets from the primary's balancer rather than from
 * `listen()`. Node checks `headersTimeout` and `requestTimeout` only on a
 * timer (`connectionsCheckingInterval`, 30 s by default) that it starts when
 * the server emits 'listening'; a server that never listens never checks, and
 * a stalled connection lived for minutes (issue 13). So: both timeouts set to
 * HTTP_REQUEST_TIMEOUT_MS, a check interval short enough that timeout plus
 * interval stays under the contract's 60 s, and the tracking started by
 * hand. An upgraded (websocket) or idle keep-alive connection is not a
 * request in progress and is not touched.
 */
export function enforceRequestTimeouts(server: http.Server, timeoutMs: number): void {
  server.headersTimeout = timeoutMs;
  server.requestTimeout = timeoutMs;
  startStalledRequestChecks(server, checkIntervalMs(timeoutMs));
}

/** A quarter of the timeout, between 100 ms and 5 s. */
export function checkIntervalMs(timeoutMs: number): number {
  return Math.min(5_000, Math.max(100, Math.floor(timeoutMs / 4)));
}
