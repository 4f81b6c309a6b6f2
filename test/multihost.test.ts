import { defineMultiHostSuite } from "./multihost-suite.js";

// Two hosts on one Redis with the classic pub/sub layout (REDIS_ADAPTER_MODE=classic).
defineMultiHostSuite("classic");
