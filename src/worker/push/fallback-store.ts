import type { Logger } from "pino";
import { type DeliveryStore, PartialPutError, type TakenMessages } from "./delivery-store.js";

/**
 * With REDIS_URL, Redis is the store; while it is unreachable the host's own
 * store (in the primary) takes over, so a push still answers and an offline
 * message is still kept. Anything kept locally stays on this host: its user
 * gets it on their next register on this host (also after Redis is back).
 * A take reads both and merges by the time each message was stored.
 */
export function withFallback(
  main: DeliveryStore,
  local: DeliveryStore,
  log: Logger,
): DeliveryStore {
  let lastWarn = 0;
  const warn = (err: unknown, op: string) => {
    // One line per 10 s is enough to see an outage without flooding the log.
    if (Date.now() - lastWarn < 10_000) return;
    lastWarn = Date.now();
    log.warn({ err, op }, "redis delivery store unreachable; using this host's store");
  };
  const orLocal = async <T>(op: string, a: () => Promise<T>, b: () => Promise<T>): Promise<T> => {
    try {
      return await a();
    } catch (err) {
      warn(err, op);
      return b();
    }
  };

  return {
    kind: main.kind,
    async put(userIds, message) {
      try {
        return await main.put(userIds, message);
      } catch (err) {
        warn(err, "put");
        if (!(err instanceof PartialPutError)) return local.put(userIds, message);
        // Stored in Redis for some users already: only the others here.
        const here = await local.put(err.failedUsers, message);
        return {
          stored: err.done.stored + here.stored,
          droppedOldest: err.done.droppedOldest + here.droppedOldest,
          refused: err.done.refused + here.refused,
        };
      }
    },
    async take(userId) {
      const [remote, own] = await Promise.all([
        main.take(userId).catch((err: unknown) => {
          warn(err, "take");
          return undefined;
        }),
        local.take(userId),
      ]);
      if (!remote) return own;
      if (own.messages.length === 0) return { ...remote, expired: remote.expired + own.expired };
      const messages = [...remote.messages, ...own.messages].sort(
        (a, b) => a.storedAt - b.storedAt,
      );
      const fromRedis = new Set(remote.messages);
      // Each source's messages keep their order in the merge: the written ones are a prefix of each.
      const fromRemote = (written: number) =>
        messages.slice(0, written).filter((m) => fromRedis.has(m)).length;
      const merged: TakenMessages = {
        messages,
        expired: remote.expired + own.expired,
        confirm: async (written = messages.length) => {
          const remoteWritten = fromRemote(written);
          await Promise.all([remote.confirm(remoteWritten), own.confirm(written - remoteWritten)]);
        },
        restore: async (written = 0) => {
          const remoteWritten = fromRemote(written);
          await Promise.all([
            // Redis gone since the take: keep its messages on this host rather than lose them.
            remote.restore(remoteWritten).catch(async () => {
              for (const m of remote.messages.slice(remoteWritten)) await local.put([userId], m);
            }),
            own.restore(written - remoteWritten),
          ]);
        },
      };
      return merged;
    },
    claim: (key, id, fingerprint) =>
      orLocal(
        "claim",
        () => main.claim(key, id, fingerprint),
        () => local.claim(key, id, fingerprint),
      ),
    async release(key, id) {
      await Promise.allSettled([main.release(key, id), local.release(key, id)]);
    },
    async close() {
      await Promise.allSettled([main.close(), local.close()]);
    },
  };
}
