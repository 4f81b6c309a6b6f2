import { z } from "zod";
import type { Config } from "../../shared/config.js";
import { GatewayError } from "../../shared/errors.js";
import {
  EVENT_NAME_PATTERN,
  RESERVED_EVENTS,
  ROOM_PATTERN,
  USER_ID_PATTERN,
} from "../../shared/names.js";

/**
 * The HTTP API's request schemas. Built from the configuration (its limits)
 * and used both to validate requests and to generate /api/openapi.json.
 * Unknown fields are rejected (strict objects), so a typo such as `userid`
 * is a 400 instead of a push that silently goes nowhere.
 *
 * One set per configuration: the OpenAPI document names a schema by the
 * instance (a `$ref` to its component wherever it is used), so the routes
 * and their parts of the document must share the instances.
 */
const byConfig = new WeakMap<Config, ReturnType<typeof buildSchemas>>();

export function createSchemas(cfg: Config): ReturnType<typeof buildSchemas> {
  let s = byConfig.get(cfg);
  if (!s) {
    s = buildSchemas(cfg);
    byConfig.set(cfg, s);
  }
  return s;
}

function buildSchemas(cfg: Config) {
  const userId = z.string().regex(USER_ID_PATTERN, "1-128 characters of A-Z a-z 0-9 _ . @ : -");
  const room = z
    .string()
    .min(1)
    .max(cfg.MAX_ROOM_NAME_LENGTH)
    .regex(ROOM_PATTERN, "letters, digits and _ . : @ # / * + = -");
  const event = z
    .string()
    .min(1)
    .max(cfg.MAX_EVENT_NAME_LENGTH)
    .regex(EVENT_NAME_PATTERN, "letters, digits and _ . : / -")
    .refine((e) => !RESERVED_EVENTS.has(e), "a name Socket.IO reserves");

  const pushOptions = z.strictObject({
    volatile: z.boolean().optional().describe("drop for clients that cannot take it right now"),
    except: z.array(userId).max(cfg.MAX_USER_IDS_PER_PUSH).optional().describe("userIds to skip"),
    ackTimeoutMs: z
      .number()
      .int()
      .min(1)
      .max(cfg.ACK_TIMEOUT_MAX_MS)
      .optional()
      .describe("wait up to this long for the clients' acks; the answer adds delivered and acked"),
    offline: z
      .enum(["store", "drop"])
      .optional()
      .describe(
        '"store": keep for target users with no socket, deliver on their next register (userId/userIds only)',
      ),
    ttlSeconds: z
      .number()
      .int()
      .min(1)
      .max(cfg.OFFLINE_MAX_TTL_SECONDS)
      .optional()
      .describe('with offline "store": how long it is kept (default OFFLINE_MAX_TTL_SECONDS)'),
    idempotencyKey: z
      .string()
      .min(1)
      .max(200)
      .regex(/^[\x21-\x7e]+$/, "printable ASCII without spaces")
      .optional()
      .describe("a repeated key within IDEMPOTENCY_WINDOW_SECONDS is accepted once"),
  });

  // Any JSON value, delivered unchanged (recursive: one component refers to itself).
  const jsonValue = z.json();
  const pushRequest = z
    .strictObject({
      userId: userId.optional(),
      userIds: z.array(userId).min(1).max(cfg.MAX_USER_IDS_PER_PUSH).optional(),
      room: room.optional(),
      rooms: z.array(room).min(1).max(100).optional(),
      broadcast: z.literal(true).optional(),
      event,
      payload: jsonValue,
      options: pushOptions.optional(),
    })
    .superRefine((v, ctx) => {
      const targets = (["userId", "userIds", "room", "rooms", "broadcast"] as const).filter(
        (k) => v[k] !== undefined,
      );
      if (targets.length !== 1) {
        ctx.addIssue({
          code: "custom",
          path: ["target"],
          message: "exactly one of userId, userIds, room, rooms, broadcast",
        });
      }
      // Delivery options (src/worker/push): a room has no offline members to store for.
      if (v.options?.offline === "store" && v.userId === undefined && v.userIds === undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["options", "offline"],
          message:
            '"store" needs a userId or userIds target (rooms and broadcasts have no offline members)',
        });
      }
      if (v.options?.ttlSeconds !== undefined && v.options.offline !== "store") {
        ctx.addIssue({
          code: "custom",
          path: ["options", "ttlSeconds"],
          message: 'only with offline: "store"',
        });
      }
    });

  const roomsQuery = z.strictObject({
    prefix: z.string().max(cfg.MAX_ROOM_NAME_LENGTH).optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    cursor: z.string().max(cfg.MAX_ROOM_NAME_LENGTH).optional(),
  });

  return { userId, room, event, jsonValue, pushOptions, pushRequest, roomsQuery };
}

export type Schemas = ReturnType<typeof buildSchemas>;
export type PushRequest = z.output<Schemas["pushRequest"]>;

/** The contract's 400 for a request that is not valid, with one detail per bad field. */
export function invalidRequest(details: { path: string; message: string }[]): GatewayError {
  return new GatewayError("VALIDATION_FAILED", "the request is not valid", { details });
}

/** The contract's 400 for a body that is not JSON. */
export function invalidJson(): GatewayError {
  return new GatewayError("VALIDATION_FAILED", "the body is not valid JSON", {
    details: [{ path: "(body)", message: "invalid JSON" }],
  });
}

/** `value` parsed by `schema`, or throws invalidRequest with zod's issues. */
export function parseRequest<T>(
  schema: {
    safeParse(v: unknown): { success: true; data: T } | { success: false; error: z.ZodError };
  },
  value: unknown,
): T {
  const r = schema.safeParse(value);
  if (!r.success) throw invalidRequest(zodDetails(r.error));
  return r.data;
}

/** zod issues → the contract's `details`: one entry per bad field. */
export function zodDetails(error: z.ZodError): { path: string; message: string }[] {
  return error.issues.map((i) => ({
    path: i.path.length ? i.path.map(String).join(".") : "(body)",
    message: i.message,
  }));
}
