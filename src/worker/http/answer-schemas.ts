import { z } from "zod";
import { ERRORS, type ErrorCode } from "../../shared/errors.js";
import type { Schemas } from "./schemas.js";

/**
 * The shapes of the API's answers, for /api/openapi.json: the routes build
 * these bodies by hand, and test/api.test.ts parses what they really send
 * with these schemas. Objects are open (z.object): a client generated from
 * the document must accept fields added later.
 */

export const count = z.number().int().min(0);

/** Present only when some workers or hosts did not answer in QUERY_TIMEOUT_MS. */
const partial = {
  missingWorkers: z
    .array(count)
    .optional()
    .describe("slots of this host's workers that did not answer in time"),
  missingHosts: z
    .array(z.string())
    .optional()
    .describe("other hosts (REDIS_URL) that did not answer in time"),
};

/** One set per request schema set (createSchemas), for the same reason: the document names instances. */
const bySchemas = new WeakMap<Schemas, ReturnType<typeof buildAnswerSchemas>>();

export function createAnswerSchemas(s: Schemas): ReturnType<typeof buildAnswerSchemas> {
  let a = bySchemas.get(s);
  if (!a) {
    a = buildAnswerSchemas(s);
    bySchemas.set(s, a);
  }
  return a;
}

function buildAnswerSchemas(s: Schemas) {
  const errorCode = z.enum(Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]]);
  const error = z.object({
    error: z.object({
      code: errorCode,
      message: z.string(),
      details: z
        .unknown()
        .optional()
        .describe(
          "400: one { path, message } per bad field; BACKEND_REJECTED: the backend's answer",
        ),
      timestamp: z.iso.datetime(),
      requestId: z.string().describe("the x-request-id response header"),
    }),
  });

  const position = z.object({
    epoch: z.string().describe("changes when the room's history was lost"),
    offset: count.describe("+1 per push in the room, system-wide"),
  });

  const pushAnswer = z.object({
    id: z.uuid().describe("the push's id (the first push's id for a repeated idempotencyKey)"),
    target: z.enum(["user", "users", "room", "rooms", "broadcast"]),
    event: s.event,
    duplicate: z
      .boolean()
      .optional()
      .describe("with idempotencyKey: true when this answers a repeated key"),
    delivered: count.optional().describe("with ackTimeoutMs: sockets the push was written to"),
    acked: count.optional().describe("with ackTimeoutMs: sockets that acked in time"),
    stored: count.optional().describe('with offline "store": offline users it was stored for'),
    notStored: count
      .optional()
      .describe('with offline "store": offline users whose store was full or unavailable'),
    position: position
      .optional()
      .describe(
        "`room` of HISTORY_ROOMS: the push's position there (also its event's second argument)",
      ),
    positions: z
      .record(s.room, position)
      .optional()
      .describe("`rooms`: the position of the push in each of them that is a history room"),
  });

  const roomsPage = z.object({
    rooms: z.array(z.object({ room: s.room, sockets: count, users: count })),
    total: count.describe("rooms matching the prefix, over every page"),
    nextCursor: s.room
      .optional()
      .describe("pass as `cursor` for the next page; absent on the last"),
    ...partial,
  });

  const roomMembers = z.object({
    room: s.room,
    sockets: count,
    members: z.array(z.object({ userId: s.userId, sockets: count })),
    ...partial,
  });

  const membership = z.object({
    room: s.room,
    userId: s.userId,
    sockets: count.describe("the user's sockets that joined or left"),
    ...partial,
  });

  const userState = z.object({
    userId: s.userId,
    online: z.boolean(),
    sockets: count,
    rooms: z.array(s.room),
    ...partial,
  });

  const userDisconnected = z.object({
    userId: s.userId,
    disconnected: count.describe("sockets disconnected"),
    ...partial,
  });

  const workerStatus = z.object({
    worker: count.describe("the worker's slot"),
    pid: z.number().int(),
    connections: count,
    users: count,
    rooms: count,
    lagMs: z.number().min(0).describe("event-loop delay p99 over the last second"),
    rssBytes: count,
    heapUsedBytes: count,
    uptimeSeconds: count,
    authMode: z.enum(["inline", "pool"]),
    forwarding: z.object({
      transport: z.enum(["http", "redis-stream", "disabled"]),
      breaker: z.enum(["closed", "half-open", "open"]).nullable(),
      inFlight: count,
    }),
    redis: z.enum(["up", "down"]).optional().describe("with REDIS_URL"),
    crossHostDropped: count
      .optional()
      .describe("with REDIS_URL: cross-host messages dropped while Redis was down"),
  });

  const hostStatus = z.object({
    connections: count,
    workers: z.array(workerStatus),
    replaced: z
      .array(
        z.object({
          worker: count,
          pid: z.number().int().optional(),
          reason: z.enum(["hung"]),
          silentMs: count,
          at: z.iso.datetime(),
        }),
      )
      .describe("workers killed and replaced for not answering the heartbeat, newest last"),
    uptimeSeconds: count,
    ...partial,
  });

  const openApiDocument = z.object({
    openapi: z.string(),
    info: z.object({}),
    paths: z.object({}),
  });

  return {
    errorCode,
    error,
    pushAnswer,
    roomsPage,
    roomMembers,
    membership,
    userState,
    userDisconnected,
    workerStatus,
    hostStatus,
    openApiDocument,
  };
}

export type AnswerSchemas = ReturnType<typeof buildAnswerSchemas>;
