import type { Socket } from "socket.io-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { emitAck, nextEvent } from "./support/client.js";
import { signToken } from "./support/fixtures.js";
import { closeOpened, open, refused } from "./support/protection.js";
import { type RunningServer, startServer } from "./support/server.js";

const GRACE_MS = 300;
let server: RunningServer;
beforeAll(async () => {
  server = await startServer({ workers: 2, env: { TOKEN_EXPIRY_GRACE_MS: String(GRACE_MS) } });
});
afterAll(async () => {
  closeOpened();
  expect(await server.stop()).toBe(0);
});
afterEach(() => closeOpened());

const now = () => Math.floor(Date.now() / 1000);
type AckT = { ok: boolean; expiresAt?: number | null; error?: { code: string } };

/** Resolves with the server's reason notice and the client's disconnect reason. */
function kicked(s: Socket, timeoutMs = 10_000) {
  return Promise.all([
    nextEvent<{ code: string; message: string }>(s, "server:disconnect", timeoutMs),
    nextEvent<string>(s, "disconnect", timeoutMs),
  ]);
}

describe("token lifetime", () => {
  it("a socket whose token expires is disconnected with AUTH_EXPIRED after the grace; a refreshed one stays", async () => {
    const exp = now() + 2;
    const plain = await open(server.publicUrl, await signToken("exp-user", { expiresIn: exp }));
    const refreshed = await open(server.publicUrl, await signToken("exp-user", { expiresIn: exp }));
    const later = now() + 3600;
    const ack = await emitAck<AckT>(refreshed, "auth:refresh", {
      token: await signToken("exp-user", { expiresIn: later }),
    });
    expect(ack).toEqual({ ok: true, expiresAt: later });

    const [notice, reason] = await kicked(plain);
    const lateByMs = Date.now() - exp * 1000;
    expect(notice.code).toBe("AUTH_EXPIRED");
    expect(reason).toBe("io server disconnect");
    // exp has second resolution; the disconnect comes after exp + grace, within a second more.
    expect(lateByMs).toBeGreaterThanOrEqual(GRACE_MS);
    expect(lateByMs).toBeLessThan(GRACE_MS + 1_500);
    // Same exp, same worker timing: had the refresh not worked, it would be gone by now.
    await new Promise((r) => setTimeout(r, 300));
    expect(refreshed.connected).toBe(true);
    console.log(
      `[figures] AUTH_EXPIRED disconnect ${lateByMs} ms after exp (grace ${GRACE_MS} ms)`,
    );
  });

  it.each([
    ["no token", {}, "INVALID_PAYLOAD"],
    ["a token that is not a string", { token: 42 }, "INVALID_PAYLOAD"],
    ["garbage", { token: "not.a.jwt" }, "AUTH_INVALID"],
  ])("refresh with %s is refused with %s", async (_name, req, code) => {
    const s = await open(server.publicUrl, await signToken("r1"));
    expect(await emitAck<AckT>(s, "auth:refresh", req)).toMatchObject({
      ok: false,
      error: { code },
    });
    expect(s.connected).toBe(true);
  });

  it("refresh with an expired token gets AUTH_EXPIRED, with another sub FORBIDDEN; the old token stays in force", async () => {
    const s = await open(server.publicUrl, await signToken("r2"));
    const expired = await signToken("r2", { expiresIn: now() - 10, iat: now() - 100 });
    expect(await emitAck<AckT>(s, "auth:refresh", { token: expired })).toMatchObject({
      ok: false,
      error: { code: "AUTH_EXPIRED" },
    });
    const other = await signToken("someone-else");
    expect(await emitAck<AckT>(s, "auth:refresh", { token: other })).toMatchObject({
      ok: false,
      error: { code: "FORBIDDEN" },
    });
    expect(await emitAck<AckT>(s, "register", { userId: "r2" })).toMatchObject({ ok: true });
  });

  it("a token without exp is refused at refresh (it would never expire); the socket keeps its session", async () => {
    const s = await open(server.publicUrl, await signToken("r3"));
    const { SignJWT } = await import("jose");
    const { TEST_JWT_SECRET } = await import("./support/fixtures.js");
    const noExp = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("r3")
      .setIssuedAt()
      .sign(new TextEncoder().encode(TEST_JWT_SECRET));
    expect(await emitAck<AckT>(s, "auth:refresh", { token: noExp })).toMatchObject({
      ok: false,
      error: { code: "AUTH_INVALID" },
    });
    expect(s.connected).toBe(true);
  });
});

describe("revocation", () => {
  it("by jti: the holder is disconnected with AUTH_REVOKED, the token is refused at handshake and refresh", async () => {
    const t1 = await signToken("rv", { jti: "jti-1" });
    const t2 = await signToken("rv", { jti: "jti-2" });
    const s1 = await open(server.publicUrl, t1);
    const s2 = await open(server.publicUrl, t2);
    const gone = kicked(s1);
    const res = await server.api("POST", "/api/tokens/revoke", {
      jti: "jti-1",
      expiresAt: now() + 600,
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ revoked: { jti: "jti-1" }, disconnected: 1 });
    const [notice] = await gone;
    expect(notice.code).toBe("AUTH_REVOKED");
    expect(s2.connected).toBe(true);

    // Both workers refuse it (several attempts reach both).
    for (let i = 0; i < 4; i++) {
      const err = await refused(open(server.publicUrl, t1));
      expect(err.message).toBe("unauthorized");
      expect(err.data).toEqual({ code: "AUTH_REVOKED" });
    }
    expect(await emitAck<AckT>(s2, "auth:refresh", { token: t1 })).toMatchObject({
      ok: false,
      error: { code: "AUTH_REVOKED" },
    });
    expect(s2.connected).toBe(true);
  });

  it("by userId and issuedBefore: older tokens are revoked, newer ones are not", async () => {
    const old = await signToken("rv-user", { iat: now() - 120 });
    const fresh = await signToken("rv-user", { iat: now() });
    const olderSockets = await Promise.all([
      open(server.publicUrl, old),
      open(server.publicUrl, old),
    ]);
    const newer = await open(server.publicUrl, fresh);
    const gone = olderSockets.map((s) => kicked(s));
    const res = await server.api("POST", "/api/tokens/revoke", {
      userId: "rv-user",
      issuedBefore: new Date((now() - 60) * 1000).toISOString(),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ disconnected: 2 });
    for (const g of gone) expect((await g)[0].code).toBe("AUTH_REVOKED");
    expect(newer.connected).toBe(true);
    expect((await refused(open(server.publicUrl, old))).data?.code).toBe("AUTH_REVOKED");
    const again = await open(server.publicUrl, fresh);
    expect(again.connected).toBe(true);
  });

  it.each([
    ["no body", undefined, 400],
    ["both kinds", { jti: "a", userId: "u", issuedBefore: 1 }, 400],
    ["milliseconds", { userId: "u", issuedBefore: Date.now() }, 400],
    ["far future", { userId: "u", issuedBefore: now() + 86_400 }, 400],
    ["bad userId", { userId: "a b", issuedBefore: 1 }, 400],
    ["empty jti", { jti: "" }, 400],
    ["unknown field", { jti: "x", until: 5 }, 400],
  ])("refuses %s with VALIDATION_FAILED", async (_name, body, status) => {
    const res = await server.api("POST", "/api/tokens/revoke", body);
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
      "VALIDATION_FAILED",
    );
  });
});
