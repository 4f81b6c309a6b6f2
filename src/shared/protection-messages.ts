/**
 * Names of the `ss:custom` messages between the primary and its workers that
 * protection and lifecycle use (src/shared/ipc.ts carries them).
 */

/** Primary → worker, when it becomes ready: every revocation still in force. */
export const REVOCATIONS_MESSAGE = "revocations";
/** Worker → primary: a revocation learned from Redis (another host), to keep for restarts. */
export const REVOCATION_LEARNED_MESSAGE = "revocation";
/** Worker → primary: `POST /api/admin/restart-workers`. */
export const RESTART_WORKERS_MESSAGE = "restart-workers";
