import { z } from "zod";
import { ERRORS } from "../../shared/errors.js";
import type { Schemas } from "./schemas.js";

/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the same zod
 * schemas that validate requests (JSON Schema 2020-12 is OpenAPI 3.1's
 * dialect), so the document cannot drift from what the server accepts.
 */

/**
 * The part of the document a group of routes brings (api-app.ts' `routes`):
 * its request schemas, as components, and its paths.
 */
export interface OpenApiPart {
  schemas: Record<string, { schema: z.ZodType; description: string }>;
  paths: Record<string, Record<string, unknown>>;
}

const jsonSchema = (s: z.ZodType) =>
  z.toJSONSchema(s, { target: "draft-2020-12", io: "input", unrepresentable: "any" });

const errorResponse = (description: string) => ({
  description,
  content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
});

const stdErrors = {
  "400": errorResponse("validation failed; `details` lists each bad field"),
  "401": errorResponse("missing or invalid API key"),
  "413": errorResponse("body over PUSH_BODY_LIMIT_BYTES"),
  "415": errorResponse("body is not application/json"),
  "429": errorResponse("rate limited; see Retry-After"),
  "503": errorResponse("overloaded or shutting down; see Retry-After"),
};

const ok = (description: string) => ({
  description,
  content: { "application/json": { schema: { type: "object" } } },
});

/** The document of the core routes plus `parts`, the ones the app mounts besides. */
export function buildOpenApi(
  schemas: Schemas,
  parts: readonly OpenApiPart[],
): Record<string, unknown> {
  const component = Object.fromEntries(
    parts.flatMap((part) =>
      Object.entries(part.schemas).map(([name, v]) => [
        name,
        { ...jsonSchema(v.schema), description: v.description },
      ]),
    ),
  );
  const extraPaths: Record<string, Record<string, unknown>> = {};
  for (const part of parts) {
    for (const [path, ops] of Object.entries(part.paths)) {
      extraPaths[path] = { ...extraPaths[path], ...ops };
    }
  }
  const roomParam = {
    name: "room",
    in: "path",
    required: true,
    schema: jsonSchema(schemas.room),
  };
  const userParam = {
    name: "userId",
    in: "path",
    required: true,
    schema: jsonSchema(schemas.userId),
  };
  return {
    openapi: "3.1.0",
    info: {
      title: "socket-server backend API",
      version: "1",
      description:
        "Push to browser clients, query rooms and users, manage membership. " +
        "All answers are cluster-wide; `missingWorkers` lists workers that did not answer in time.",
    },
    security: [{ apiKey: [] }],
    components: {
      securitySchemes: { apiKey: { type: "http", scheme: "bearer" } },
      schemas: {
        PushRequest: {
          ...jsonSchema(schemas.pushRequest),
          description: "Exactly one of userId, userIds, room, rooms, broadcast.",
        },
        Error: {
          type: "object",
          required: ["error"],
          properties: {
            error: {
              type: "object",
              required: ["code", "message", "timestamp", "requestId"],
              properties: {
                code: { type: "string", enum: Object.keys(ERRORS) },
                message: { type: "string" },
                details: {},
                timestamp: { type: "string", format: "date-time" },
                requestId: { type: "string" },
              },
            },
          },
        },
        ...component,
      },
    },
    paths: {
      "/api/push": {
        post: {
          summary: "Push an event to a user, users, a room, rooms or everyone",
          requestBody: {
            required: true,
            content: {
              "application/json": { schema: { $ref: "#/components/schemas/PushRequest" } },
            },
          },
          responses: {
            "202": ok("accepted: { id, target, event, ... }"),
            "409": errorResponse("`options.idempotencyKey` was used for a different request"),
            ...stdErrors,
          },
        },
      },
      "/api/rooms": {
        get: {
          summary: "Rooms with socket and user counts (paginated by room name)",
          parameters: [
            { name: "prefix", in: "query", schema: { type: "string" } },
            { name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 1000 } },
            { name: "cursor", in: "query", schema: { type: "string" } },
          ],
          responses: {
            "200": ok("{ rooms: [{ room, sockets, users }], total, nextCursor? }"),
            ...stdErrors,
          },
        },
      },
      "/api/rooms/{room}": {
        get: {
          summary: "Members of a room",
          parameters: [roomParam],
          responses: {
            "200": ok("{ room, sockets, members: [{ userId, sockets }] }"),
            "404": errorResponse("no socket is in this room"),
            ...stdErrors,
          },
        },
      },
      "/api/rooms/{room}/members/{userId}": {
        put: {
          summary: "Put every socket of a user in a room",
          parameters: [roomParam, userParam],
          responses: {
            "200": ok("{ room, userId, sockets }"),
            "404": errorResponse("the user has no connected socket"),
            ...stdErrors,
          },
        },
        delete: {
          summary: "Take every socket of a user out of a room",
          parameters: [roomParam, userParam],
          responses: {
            "200": ok("{ room, userId, sockets }"),
            "404": errorResponse("the user has no connected socket"),
            ...stdErrors,
          },
        },
      },
      "/api/users/{userId}": {
        get: {
          summary: "Whether a user is online, with socket count and rooms",
          parameters: [userParam],
          responses: { "200": ok("{ userId, online, sockets, rooms }"), ...stdErrors },
        },
      },
      "/api/users/{userId}/disconnect": {
        post: {
          summary: "Disconnect every socket of a user",
          parameters: [userParam],
          responses: { "200": ok("{ userId, disconnected }"), ...stdErrors },
        },
      },
      "/api/status": {
        get: {
          summary: "Workers, connections, rooms, memory, uptime",
          responses: { "200": ok("host status"), ...stdErrors },
        },
      },
      "/api/openapi.json": {
        get: { summary: "This document", responses: { "200": ok("OpenAPI 3.1") } },
      },
      ...extraPaths,
    },
  };
}
