"use strict";
// autocannon setupRequest (runs in autocannon's worker thread, hence a
// CommonJS file): each request pushes to a random user among BENCH_PUSH_USERS,
// or, for /api/push/batch, BENCH_PUSH_BATCH_SIZE pushes to random users; with
// BENCH_PUSH_ROOM_PREFIX, to a random room `<prefix><k>` of BENCH_PUSH_ROOMS
// instead. The payload carries the send time for the delivery latency.
const users = Number(process.env.BENCH_PUSH_USERS) || 1000;
const batch = Number(process.env.BENCH_PUSH_BATCH_SIZE) || 0;
const roomPrefix = process.env.BENCH_PUSH_ROOM_PREFIX || "";
const rooms = Number(process.env.BENCH_PUSH_ROOMS) || 1;
const target = () =>
  roomPrefix
    ? { room: `${roomPrefix}${Math.floor(Math.random() * rooms)}` }
    : { userId: `u${Math.floor(Math.random() * users)}` };
const one = () => ({
  ...target(),
  event: "bench:push",
  payload: { t: performance.timeOrigin + performance.now() },
});
module.exports = (request) => {
  const body = batch > 0 ? { pushes: Array.from({ length: batch }, one) } : one();
  request.body = JSON.stringify(body);
  return request;
};
