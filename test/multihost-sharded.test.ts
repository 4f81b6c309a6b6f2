import { defineMultiHostSuite } from "./multihost-suite.js";

// The same cases with Redis 7 sharded pub/sub and per-room channels.
defineMultiHostSuite("sharded");
