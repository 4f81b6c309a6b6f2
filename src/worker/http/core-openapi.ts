import type { Config } from "../../shared/config.js";
import { createAnswerSchemas } from "./answer-schemas.js";
import type { OpenApiPart } from "./openapi.js";
import { createSchemas } from "./schemas.js";

/** The core routes' part of /api/openapi.json (api-app.ts): pushes, rooms, users, status. */
export function coreOpenApi(cfg: Config): OpenApiPart {
  const s = createSchemas(cfg);
  const a = createAnswerSchemas(s);
  const room = { room: s.room };
  const member = { room: s.room, userId: s.userId };
  const user = { userId: s.userId };
  return {
    tags: {
      push: "Events to browser clients: one user, several, rooms, everyone",
      rooms: "Rooms, their members, and placing users in them",
      users: "Users: online state and disconnects",
      host: "The host and this document",
    },
    schemas: {
      UserId: { schema: s.userId, description: "A user's id: the `sub` of their token." },
      RoomName: { schema: s.room, description: "A room name (`user:<id>` is a user's own room)." },
      EventName: {
        schema: s.event,
        description: "An event name; not one Socket.IO reserves (connect, disconnect, …).",
      },
      JsonValue: { schema: s.jsonValue, description: "Any JSON value; delivered unchanged." },
      PushOptions: { schema: s.pushOptions, description: "How the push is delivered." },
      PushRequest: {
        schema: s.pushRequest,
        description:
          'Exactly one of userId, userIds, room, rooms, broadcast. `options.offline: "store"` needs a userId or userIds target; `ttlSeconds` needs `offline: "store"`.',
      },
      PushAnswer: {
        schema: a.pushAnswer,
        description:
          "An accepted push; with ackTimeoutMs, answered once every reached socket acked or the timeout passed.",
      },
      RoomsPage: { schema: a.roomsPage, description: "One page of rooms, sorted by name." },
      RoomMembers: { schema: a.roomMembers, description: "A room's members." },
      Membership: {
        schema: a.membership,
        description: "A user's sockets put in or taken out of a room.",
      },
      UserState: {
        schema: a.userState,
        description: "A user's sockets and rooms, on every worker and host.",
      },
      UserDisconnected: {
        schema: a.userDisconnected,
        description: "A user's sockets, disconnected.",
      },
      WorkerStatus: { schema: a.workerStatus, description: "One live worker." },
      HostStatus: { schema: a.hostStatus, description: "The host: its workers and connections." },
      OpenApiDocument: { schema: a.openApiDocument, description: "An OpenAPI 3.1 document." },
      ErrorCode: {
        schema: a.errorCode,
        description: "The error codes (docs/http-api.md#error-codes); the same in acks.",
      },
      Error: {
        schema: a.error,
        description: "Every error answer: 4xx and 5xx, everywhere on the HTTP API.",
      },
    },
    paths: {
      "/api/push": {
        post: {
          operationId: "push",
          tag: "push",
          summary: "Push an event to a user, users, a room, rooms or everyone",
          body: s.pushRequest,
          ok: { status: 202, body: a.pushAnswer, description: "accepted" },
          errors: { 409: "`options.idempotencyKey` was used for a different request (CONFLICT)" },
          limited: true,
        },
      },
      "/api/rooms": {
        get: {
          operationId: "listRooms",
          tag: "rooms",
          summary: "Rooms with socket and user counts (paginated by room name)",
          query: s.roomsQuery,
          ok: { status: 200, body: a.roomsPage, description: "one page of rooms" },
        },
      },
      "/api/rooms/{room}": {
        get: {
          operationId: "getRoom",
          tag: "rooms",
          summary: "Members of a room",
          params: room,
          ok: { status: 200, body: a.roomMembers, description: "the room's members" },
          errors: { 404: "no socket is in this room (NOT_FOUND)" },
        },
      },
      "/api/rooms/{room}/members/{userId}": {
        put: {
          operationId: "addRoomMember",
          tag: "rooms",
          summary: "Put every socket of a user in a room",
          params: member,
          ok: { status: 200, body: a.membership, description: "the user's sockets joined" },
          errors: { 404: "the user has no connected socket (NOT_FOUND)" },
        },
        delete: {
          operationId: "removeRoomMember",
          tag: "rooms",
          summary: "Take every socket of a user out of a room",
          params: member,
          ok: { status: 200, body: a.membership, description: "the user's sockets left" },
          errors: { 404: "the user has no connected socket (NOT_FOUND)" },
        },
      },
      "/api/users/{userId}": {
        get: {
          operationId: "getUser",
          tag: "users",
          summary: "Whether a user is online, with socket count and rooms",
          params: user,
          ok: { status: 200, body: a.userState, description: "the user's state (offline too)" },
        },
      },
      "/api/users/{userId}/disconnect": {
        post: {
          operationId: "disconnectUser",
          tag: "users",
          summary: "Disconnect every socket of a user",
          params: user,
          ok: { status: 200, body: a.userDisconnected, description: "the sockets disconnected" },
        },
      },
      "/api/status": {
        get: {
          operationId: "getStatus",
          tag: "host",
          summary: "Workers, connections, rooms, memory, uptime",
          ok: { status: 200, body: a.hostStatus, description: "the host's status" },
        },
      },
      "/api/openapi.json": {
        get: {
          operationId: "getOpenApi",
          tag: "host",
          summary: "This document",
          ok: { status: 200, body: a.openApiDocument, description: "the OpenAPI 3.1 document" },
        },
      },
    },
  };
}
