"use strict";
// Artillery processor for ../../artillery.yml (CommonJS: Artillery loads it
// with require). Tokens are signed here with SS_JWT_SECRET (HS256, node:crypto
// only, so this package needs nothing beyond Artillery itself).
const { createHmac, randomUUID } = require("node:crypto");

const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

function signToken(context, _events, next) {
  const secret = process.env.SS_JWT_SECRET;
  if (!secret) return next(new Error("set SS_JWT_SECRET (the server's JWT_SECRET)"));
  const userId = `art-${randomUUID().slice(0, 8)}`;
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ sub: userId, rooms: ["room:*"], iat: now, exp: now + 3600 });
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  context.vars.token = `${head}.${body}.${sig}`;
  context.vars.userId = userId;
  return next();
}

// The backend's side: POST /api/push to this user, then wait for the push on
// the user's socket. Reports push.delivery_ms, push.received, push.missed.
function pushToSelf(context, events, next) {
  const socket = context.sockets?.["/"] ?? context.sockets?.[""];
  if (!socket) return next(new Error("no socket in this scenario"));
  const sent = Date.now();
  let done = false;
  const finish = (ok) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.off("artillery:push", onPush);
    // Both counters on every push, so that the ensure checks always find them.
    events.emit("counter", "push.received", ok ? 1 : 0);
    events.emit("counter", "push.missed", ok ? 0 : 1);
    if (ok) events.emit("histogram", "push.delivery_ms", Date.now() - sent);
    next();
  };
  const onPush = () => finish(true);
  const timer = setTimeout(() => finish(false), 5000);
  socket.on("artillery:push", onPush);
  fetch(`${process.env.SS_API_URL}/api/push`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${process.env.SS_API_KEY}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({
      userId: context.vars.userId,
      event: "artillery:push",
      payload: { sent },
    }),
  }).then(
    (res) => {
      events.emit("counter", `push.http_${res.status}`, 1);
      if (res.status !== 202) finish(false);
      return res.arrayBuffer();
    },
    () => finish(false),
  );
}

module.exports = { signToken, pushToSelf };
