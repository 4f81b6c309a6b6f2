import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  BUILT_IN_EVENTS,
  type BuiltInEvent,
  type ClientToServerEvents,
  DISCONNECT_REASONS,
  SERVER_DISCONNECT_EVENT,
  SERVER_EVENTS,
} from "../src/shared/events.js";

// docs/protocol.md, "Events": one row per event the server handles or sends
// itself, with its direction, and one row per disconnect reason with its message.

// BUILT_IN_EVENTS names exactly the keys of ClientToServerEvents: tsc fails here if they drift.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const builtInsAreTheClientEvents: Same<BuiltInEvent, keyof ClientToServerEvents> = true;

interface Tables {
  /** Each event's directions (`room:signal` goes both ways). */
  events: Map<string, Set<string>>;
  reasons: Map<string, string>;
}

function docTables(): Tables {
  const doc = readFileSync(new URL("../docs/protocol.md", import.meta.url), "utf8");
  const start = doc.indexOf("\n## Events");
  expect(start).toBeGreaterThan(0);
  const end = doc.indexOf("\n## ", start + 1);
  const tables: Tables = { events: new Map(), reasons: new Map() };
  let current: "events" | "reasons" | undefined;
  for (const line of doc.slice(start, end === -1 ? undefined : end).split("\n")) {
    if (!line.startsWith("|")) {
      current = undefined;
      continue;
    }
    const cells = line.split(" | ").map((c) => c.replace(/^\| |\|$/g, "").trim());
    if (cells[0] === "event") current = "events";
    else if (cells[0] === "code") current = "reasons";
    else if (current === "events")
      for (const m of cells[0]!.matchAll(/`([^`]+)`/g)) {
        const directions = tables.events.get(m[1]!) ?? new Set<string>();
        tables.events.set(m[1]!, directions.add(cells[1]!));
      }
    else if (current === "reasons") {
      const code = /^`([A-Z_]+)`$/.exec(cells[0]!)?.[1];
      if (code) tables.reasons.set(code, cells[1]!);
    }
  }
  return tables;
}

const named = (events: Map<string, Set<string>>, direction: string) =>
  [...events].filter(([, d]) => d.has(direction)).map(([name]) => name);

describe("docs/protocol.md events table", () => {
  it("lists every client → server event and no other", () => {
    expect(builtInsAreTheClientEvents).toBe(true);
    const { events } = docTables();
    expect(named(events, "client → server").sort()).toEqual([...BUILT_IN_EVENTS].sort());
  });
  it("lists every event the server sends on its own, and no other", () => {
    expect(SERVER_EVENTS).toContain(SERVER_DISCONNECT_EVENT);
    const { events } = docTables();
    expect(named(events, "server → client").sort()).toEqual([...SERVER_EVENTS].sort());
    for (const directions of events.values())
      for (const d of directions) expect(["client → server", "server → client"]).toContain(d);
  });
  it("lists every disconnect reason with the message the server sends, and no other", () => {
    const { reasons } = docTables();
    expect(Object.fromEntries(reasons)).toEqual(DISCONNECT_REASONS);
  });
});
