import { createHash } from "node:crypto";

/**
 * What an idempotency key is remembered with: a digest of the whole push
 * request, so that the same key sent again with a different request is told
 * apart from a retry (409 CONFLICT rather than a silent duplicate). Object
 * keys are sorted first: a backend that builds the same request from a map
 * (Go marshals maps in sorted order, other clients may not) is still "the
 * same request".
 */
export function requestFingerprint(request: unknown): string {
  return createHash("sha256").update(canonicalJson(request)).digest("base64url").slice(0, 22);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}
