import { describe, expect, it } from "vitest";
import type { ForwardedEvent } from "../src/worker/forward/backend-contract.js";
import { serializeEvent, toForwardableJson } from "../src/worker/forward/serialize-event.js";
import { signatureHeader, verifySignature } from "../src/worker/forward/signature.js";
import { FORWARDED_EVENT_FIELDS } from "./support/fixtures.js";

/** Pure units of forwarding: the signature and the body. */

// The same vector as examples/go-backend/signature_test.go: both sides agree.
const SECRET = "test-only-backend-signing-secret-0123";
const BODY =
  '{"id":"6f1c0a52-8f0e-4d5e-9a43-6f7d2a1b9c10","event":"echo","payload":{"text":"hi"},"userId":"alice","socketId":"abc","rooms":["user:alice"],"receivedAt":"2024-01-01T00:00:00.000Z"}';
const HEADER = "t=1700000000,v1=e0d04f3dc2809274e63a4c3c2586f91cb5c3d3ffecfeadfc8e1e0823105dd084";

describe("signature", () => {
  it("matches the vector the Go example verifies", () => {
    expect(signatureHeader(SECRET, BODY, 1_700_000_000)).toBe(HEADER);
  });

  it("verifies within the tolerance and refuses tampering, other secrets, stale times", () => {
    const at = { nowSeconds: 1_700_000_000 };
    expect(verifySignature(SECRET, HEADER, BODY, at)).toBe(true);
    expect(verifySignature(SECRET, HEADER, `${BODY} `, at)).toBe(false);
    expect(verifySignature("another-secret-0123456789", HEADER, BODY, at)).toBe(false);
    expect(verifySignature(SECRET, HEADER, BODY, { nowSeconds: 1_700_000_000 + 301 })).toBe(false);
    expect(verifySignature(SECRET, HEADER, BODY, { nowSeconds: 1_700_000_000 - 299 })).toBe(true);
  });

  it("accepts any of several v1 entries (rotation) and refuses malformed headers", () => {
    const at = { nowSeconds: 1_700_000_000 };
    const v1 = HEADER.split("v1=")[1]!;
    expect(verifySignature(SECRET, `t=1700000000,v1=${"0".repeat(64)},v1=${v1}`, BODY, at)).toBe(
      true,
    );
    for (const bad of [undefined, "", "t=1700000000", `v1=${v1}`, `t=x,v1=${v1}`, "garbage"]) {
      expect(verifySignature(SECRET, bad, BODY, at)).toBe(false);
    }
  });

  it("signs the body's UTF-8 bytes as it signs its text (the forwarder sends bytes)", () => {
    const text = BODY.replace("hi", "é✓ 😀");
    expect(signatureHeader(SECRET, Buffer.from(text), 1_700_000_000)).toBe(
      signatureHeader(SECRET, text, 1_700_000_000),
    );
    expect(signatureHeader(SECRET, Buffer.from(BODY), 1_700_000_000)).toBe(HEADER);
  });

  it("signs with the current time by default", () => {
    const h = signatureHeader(SECRET, BODY);
    expect(verifySignature(SECRET, h, BODY)).toBe(true);
    const t = Number(/^t=(\d+),/.exec(h)![1]);
    expect(Math.abs(t - Date.now() / 1000)).toBeLessThan(5);
  });
});

describe("the forwarded body", () => {
  const event = (payload: unknown): ForwardedEvent => ({
    id: "id-1",
    event: "chat:send",
    payload,
    userId: "alice",
    socketId: "sock",
    rooms: ["user:alice"],
    receivedAt: "2024-01-01T00:00:00.000Z",
  });

  it("has the contract's fields in order; a missing payload is null", () => {
    const r = serializeEvent(event(undefined));
    expect(r.ok).toBe(true);
    const body = JSON.parse((r as { body: string }).body);
    expect(Object.keys(body)).toEqual(FORWARDED_EVENT_FIELDS);
    expect(body.payload).toBeNull();
  });

  it("refuses binary anywhere in the payload", () => {
    for (const p of [
      Buffer.from("x"),
      { a: [1, { b: new Uint8Array(2) }] },
      [new ArrayBuffer(4)],
      { deep: { deeper: { file: new Float32Array(1) } } },
    ]) {
      expect(serializeEvent(event(p))).toMatchObject({
        ok: false,
        error: { code: "INVALID_PAYLOAD", message: expect.stringMatching(/^binary payloads/) },
      });
    }
  });

  it("refuses what JSON cannot hold, without throwing", () => {
    expect(toForwardableJson({ n: 10n })).toMatchObject({
      ok: false,
      error: { code: "INVALID_PAYLOAD", message: "the payload cannot be serialised as JSON" },
    });
    const cyclic: Record<string, unknown> = {};
    cyclic["self"] = cyclic;
    expect(toForwardableJson(cyclic)).toMatchObject({
      ok: false,
      error: { code: "INVALID_PAYLOAD" },
    });
  });

  it("walks deep nesting without overflowing the stack", () => {
    let deep: unknown = "leaf";
    for (let i = 0; i < 100_000; i++) deep = [deep];
    // JSON.stringify itself overflows on this: a clean INVALID_PAYLOAD, no crash.
    const r = toForwardableJson(deep);
    expect(r.ok === true || r.error.code === "INVALID_PAYLOAD").toBe(true);
  });

  it("keeps unicode and nesting as they are", () => {
    const p = { text: "é✓ 😀", list: [1, null, { x: true }] };
    const r = toForwardableJson(p);
    expect(r.ok && JSON.parse(r.json)).toEqual(p);
  });
});
