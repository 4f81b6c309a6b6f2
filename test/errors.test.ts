import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ackError, ERRORS, GatewayError, isErrorCode } from "../src/shared/errors.js";

// docs/http-api.md, "Error codes": one row per code with its HTTP status.
const doc = readFileSync(new URL("../docs/http-api.md", import.meta.url), "utf8");

function docTable(): Map<string, number> {
  const start = doc.indexOf("\n## Error codes");
  expect(start).toBeGreaterThan(0);
  const end = doc.indexOf("\n## ", start + 1);
  const rows = new Map<string, number>();
  for (const line of doc.slice(start, end === -1 ? undefined : end).split("\n")) {
    const m = /^\| `([A-Z_]+)` \| (\d{3}) \|/.exec(line);
    if (m) rows.set(m[1]!, Number(m[2]));
  }
  return rows;
}

describe("error table", () => {
  it("every code is in docs/http-api.md with its status, and it lists no other code", () => {
    const rows = docTable();
    for (const [code, { status }] of Object.entries(ERRORS))
      expect([code, rows.get(code)]).toEqual([code, status]);
    expect([...rows.keys()].sort()).toEqual(Object.keys(ERRORS).sort());
  });
  it("covers every code the contract names", () => {
    for (const code of [
      "AUTH_MISSING",
      "AUTH_INVALID",
      "AUTH_EXPIRED",
      "AUTH_REVOKED",
      "OVERLOADED",
      "NOT_REGISTERED",
      "BACKEND_UNAVAILABLE",
      "BACKEND_TIMEOUT",
      "BACKEND_REJECTED",
      "RATE_LIMITED",
      "INVALID_PAYLOAD",
      "FORWARDING_DISABLED",
      "FORBIDDEN",
    ]) {
      expect(isErrorCode(code)).toBe(true);
    }
  });
  it("statuses are client errors or the few server-side conditions", () => {
    for (const { status } of Object.values(ERRORS))
      expect([400, 401, 403, 404, 405, 409, 413, 415, 429, 500, 501, 502, 503, 504]).toContain(
        status,
      );
  });
  it("ackError and GatewayError carry the code and the table's message", () => {
    expect(ackError("FORBIDDEN")).toEqual({
      ok: false,
      error: { code: "FORBIDDEN", message: "not allowed" },
    });
    expect(ackError("RATE_LIMITED", undefined, { retryAfter: 2 }).error.retryAfter).toBe(2);
    const e = new GatewayError("NOT_FOUND");
    expect([e.code, e.status, e.message]).toEqual(["NOT_FOUND", 404, "no such resource"]);
    expect(isErrorCode("toString")).toBe(false);
  });
});
