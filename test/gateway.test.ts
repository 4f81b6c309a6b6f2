import { describe, expect, it } from "vitest";
import { connect, connectRegistered, emitAck, nextEvent } from "./support/client.js";
import { signToken } from "./support/fixtures.js";
import { useInProcessServer } from "./support/in-process.js";

const server = useInProcessServer({
  env: { REGISTER_TIMEOUT_MS: "1500", MAX_PAYLOAD_BYTES: "20000" },
});

describe("handshake auth", () => {
  it("refuses a missing token with AUTH_MISSING", async () => {
    const err = await connect(server.publicUrl, undefined).catch((e) => e);
    expect(err.message).toBe("unauthorized");
    expect(err.data).toEqual({ code: "AUTH_MISSING" });
  });
  it("refuses a bad signature with AUTH_INVALID", async () => {
    const token = await signToken("bob", { secret: new TextEncoder().encode("x".repeat(40)) });
    const err = await connect(server.publicUrl, token).catch((e) => e);
    expect(err.data).toEqual({ code: "AUTH_INVALID" });
  });
  it("refuses an expired token with AUTH_EXPIRED", async () => {
    const token = await signToken("bob", { expiresIn: Math.floor(Date.now() / 1000) - 60 });
    const err = await connect(server.publicUrl, token).catch((e) => e);
    expect(err.data).toEqual({ code: "AUTH_EXPIRED" });
  });
});

describe("register and push", () => {
  it("registers and receives a push to the user", async () => {
    const s = await connectRegistered(server.publicUrl, await signToken("alice"), "alice");
    const got = nextEvent(s, "hello");
    const res = await server.api("POST", "/api/push", {
      userId: "alice",
      event: "hello",
      payload: { a: [1, "é✓"] },
    });
    expect(res.status).toBe(202);
    expect(await got).toEqual({ a: [1, "é✓"] });
  });
  it("answers NOT_REGISTERED before register", async () => {
    const s = await connect(server.publicUrl, await signToken("carol"));
    expect(await emitAck(s, "chat", { x: 1 })).toMatchObject({
      ok: false,
      error: { code: "NOT_REGISTERED" },
    });
  });
});

describe("register rules", () => {
  it("userId must equal the token's sub", async () => {
    const s = await connect(server.publicUrl, await signToken("dave"));
    expect(await emitAck(s, "register", { userId: "eve" })).toMatchObject({
      ok: false,
      error: { code: "FORBIDDEN" },
    });
    expect(await emitAck(s, "register", { userId: 42 })).toMatchObject({
      ok: false,
      error: { code: "INVALID_PAYLOAD" },
    });
    expect(await emitAck(s, "register", null)).toMatchObject({
      ok: false,
      error: { code: "INVALID_PAYLOAD" },
    });
    expect(await emitAck(s, "register", { userId: "dave" })).toEqual({
      ok: true,
      userId: "dave",
      rooms: ["user:dave"],
    });
  });

  it("a socket that does not register in time is disconnected with a reason", async () => {
    const s = await connect(server.publicUrl, await signToken("slowpoke"));
    const notice = nextEvent<{ code: string }>(s, "server:disconnect", 5_000);
    const reason = nextEvent<string>(s, "disconnect", 5_000);
    expect((await notice).code).toBe("REGISTER_TIMEOUT");
    expect(await reason).toBe("io server disconnect");
  });

  it("room:join before register is NOT_REGISTERED", async () => {
    const s = await connect(server.publicUrl, await signToken("early", { rooms: ["*"] }));
    expect(await emitAck(s, "room:join", { room: "x" })).toMatchObject({
      ok: false,
      error: { code: "NOT_REGISTERED" },
    });
  });
});

describe("rooms claim", () => {
  it("allows exact names and prefix patterns, refuses the rest with FORBIDDEN", async () => {
    const token = await signToken("frank", { rooms: ["lobby", "chat:*"] });
    const s = await connectRegistered(server.publicUrl, token, "frank");
    expect(await emitAck(s, "room:join", { room: "lobby" })).toMatchObject({ ok: true });
    expect(await emitAck(s, "room:join", { room: "chat:42" })).toEqual({
      ok: true,
      room: "chat:42",
      rooms: ["user:frank", "lobby", "chat:42"],
    });
    expect(await emitAck(s, "room:join", { room: "admin" })).toMatchObject({
      ok: false,
      error: { code: "FORBIDDEN" },
    });
    expect(await emitAck(s, "room:join", { room: "chat" })).toMatchObject({
      ok: false,
      error: { code: "FORBIDDEN" },
    });
    expect(await emitAck(s, "room:join", { room: "bad room" })).toMatchObject({
      ok: false,
      error: { code: "INVALID_PAYLOAD" },
    });
    expect(await emitAck(s, "room:leave", { room: "lobby" })).toMatchObject({
      ok: true,
      rooms: ["user:frank", "chat:42"],
    });
  });

  it("a token without a rooms claim may join nothing", async () => {
    const s = await connectRegistered(server.publicUrl, await signToken("gina"), "gina");
    expect(await emitAck(s, "room:join", { room: "lobby" })).toMatchObject({
      ok: false,
      error: { code: "FORBIDDEN" },
    });
  });

  it("a disconnected socket leaves every room", async () => {
    const s = await connectRegistered(
      server.publicUrl,
      await signToken("hal", { rooms: ["hal-room"] }),
      "hal",
    );
    await emitAck(s, "room:join", { room: "hal-room" });
    expect((await server.api("GET", "/api/rooms/hal-room")).status).toBe(200);
    s.close();
    await new Promise((r) => setTimeout(r, 200));
    expect((await server.api("GET", "/api/rooms/hal-room")).status).toBe(404);
  });
});

describe("limits", () => {
  it("a payload over MAX_PAYLOAD_BYTES ends the connection and nothing crashes", async () => {
    const s = await connectRegistered(server.publicUrl, await signToken("big"), "big");
    const closed = nextEvent<string>(s, "disconnect");
    s.emit("chat", "x".repeat(30_000));
    expect(await closed).toBe("transport close");
    const s2 = await connectRegistered(server.publicUrl, await signToken("big"), "big");
    expect(s2.connected).toBe(true);
  });

  it("reserved or malformed event names get INVALID_PAYLOAD", async () => {
    const s = await connectRegistered(server.publicUrl, await signToken("names"), "names");
    for (const name of ["a b", "x".repeat(200), "<script>"]) {
      expect(await emitAck(s, name, 1)).toMatchObject({
        ok: false,
        error: { code: "INVALID_PAYLOAD" },
      });
    }
  });

  it("without BACKEND_URL, forwarded events get FORWARDING_DISABLED", async () => {
    const s = await connectRegistered(server.publicUrl, await signToken("fwd"), "fwd");
    expect(await emitAck(s, "chat", { text: "hi" })).toMatchObject({
      ok: false,
      error: { code: "FORWARDING_DISABLED" },
    });
  });
});
