import { personalRoomOwner } from "./events.js";

/**
 * Limits on names that come from outside: user ids, room names, event names.
 * One place, so the gateway, the API and their schemas agree.
 */
export const USER_ID_PATTERN = /^[A-Za-z0-9_.@:-]{1,128}$/;
/** Printable ASCII without spaces, quotes, angle brackets or backslash. */
export const ROOM_PATTERN = /^[A-Za-z0-9_.:@#/*+=-]+$/;
export const EVENT_NAME_PATTERN = /^[A-Za-z0-9_.:/-]+$/;

/** Event names refused everywhere: Socket.IO's own (emitting them as data breaks it) and prototype keys. */
export const RESERVED_EVENTS = new Set([
  "connect",
  "connect_error",
  "disconnect",
  "disconnecting",
  "newListener",
  "removeListener",
  "error",
  "ping",
  "pong",
  // Not Socket.IO's, but keys of every JavaScript object: a backend that
  // dispatches with `handlers[event]` must never be handed one of these.
  "__proto__",
  "constructor",
  "prototype",
]);

export function isValidRoom(room: unknown, maxLength: number): room is string {
  return (
    typeof room === "string" &&
    room.length > 0 &&
    room.length <= maxLength &&
    ROOM_PATTERN.test(room)
  );
}

export function isValidEventName(name: unknown, maxLength: number): name is string {
  return (
    typeof name === "string" &&
    name.length > 0 &&
    name.length <= maxLength &&
    EVENT_NAME_PATTERN.test(name) &&
    !RESERVED_EVENTS.has(name)
  );
}

/**
 * Does the token's `rooms` claim allow this room? Entries are exact names or
 * `prefix*` patterns (`chat:*` allows `chat:42`, `*` allows everything).
 * The gateway refuses other users' personal rooms before asking this.
 */
export function roomAllowed(room: string, claims: readonly string[]): boolean {
  for (const c of claims) {
    if (c === room) return true;
    if (c.endsWith("*") && room.startsWith(c.slice(0, -1))) return true;
  }
  return false;
}

/**
 * Is `room` among a feature's rooms (PRESENCE_ROOMS, SIGNAL_ROOMS: exact
 * names or `prefix*` patterns, read like the `rooms` claim)? Never a
 * personal room: those carry one user's pushes.
 */
export function inRoomList(room: string, list: readonly string[]): boolean {
  return list.length > 0 && personalRoomOwner(room) === undefined && roomAllowed(room, list);
}
