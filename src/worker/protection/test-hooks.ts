import type { Router } from "express";

/**
 * TEST-ONLY routes under /api/test/, mounted only when TEST_HOOKS=true,
 * which the configuration refuses unless NODE_ENV=test. They let the test
 * suite break a worker on purpose: stall its event loop, crash it, and look
 * for prototype pollution from inside.
 */

const BASELINE_PROTO_KEYS = new Set(Object.getOwnPropertyNames(Object.prototype));

export function mountTestHooks(router: Router, deps: { slot: number }): void {
  // Answers first, then blocks the loop for `ms` (so the caller knows which worker it stalled).
  router.post("/test/block-loop", (req, res) => {
    const ms = Math.min(10_000, Math.max(0, Number((req.body as { ms?: unknown })?.ms ?? 0)));
    res.once("finish", () => {
      setImmediate(() => {
        const end = Date.now() + ms;
        while (Date.now() < end) {
          // busy: this is the point
        }
      });
    });
    res.json({ slot: deps.slot, pid: process.pid, blockedMs: ms });
  });

  // An error thrown outside any handler: the worker's uncaughtException path.
  router.post("/test/crash", (_req, res) => {
    res.once("finish", () => {
      setImmediate(() => {
        throw new Error("test-only crash requested through /api/test/crash");
      });
    });
    res.json({ slot: deps.slot, pid: process.pid });
  });

  router.get("/test/prototype", (_req, res) => {
    const added = Object.getOwnPropertyNames(Object.prototype).filter(
      (k) => !BASELINE_PROTO_KEYS.has(k),
    );
    res.json({ slot: deps.slot, added, arrayAdded: Object.keys(Array.prototype) });
  });
}
