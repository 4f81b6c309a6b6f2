import type { Query, QueryReply } from "../shared/ipc.js";
import type { Supervisor } from "./supervisor.js";

/**
 * Fans a query out to every live worker and collects the answers. It never
 * waits on a worker that is gone: a worker that exits while a query is open
 * is counted as missing at once, and one that is stuck is counted as missing
 * at the deadline. (The cluster adapter's own fetchSockets waits ~5 s on a
 * dead worker, which is why room and user queries do not use it.)
 */

export interface QueryResult {
  replies: QueryReply[];
  missing: number[];
}

interface Pending {
  waiting: Set<number>;
  replies: QueryReply[];
  missing: number[];
  timer: NodeJS.Timeout;
  done: (r: QueryResult) => void;
}

export class QueryHub {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly sup: Supervisor) {
    sup.on("message", (slot, msg) => {
      if (msg.t !== "ss:reply") return;
      const p = this.pending.get(msg.id);
      if (!p?.waiting.delete(slot)) return;
      p.replies.push(
        msg.error ? { slot, result: msg.result, error: msg.error } : { slot, result: msg.result },
      );
      this.settleIfDone(msg.id, p);
    });
    sup.on("exit", (slot) => {
      for (const [id, p] of this.pending) {
        if (p.waiting.delete(slot)) {
          p.missing.push(slot);
          this.settleIfDone(id, p);
        }
      }
    });
  }

  run(q: Query, timeoutMs: number): Promise<QueryResult> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const slots = this.sup.liveSlots();
      const p: Pending = {
        waiting: new Set(),
        replies: [],
        missing: [],
        done: resolve,
        timer: setTimeout(() => {
          p.missing.push(...p.waiting);
          p.waiting.clear();
          this.settleIfDone(id, p);
        }, timeoutMs),
      };
      this.pending.set(id, p);
      for (const s of this.sup.slots) {
        if (slots.has(s.slot) && s.ready && this.sup.send(s.slot, { t: "ss:query", id, q })) {
          p.waiting.add(s.slot);
        } else {
          p.missing.push(s.slot);
        }
      }
      this.settleIfDone(id, p);
    });
  }

  private settleIfDone(id: number, p: Pending): void {
    if (p.waiting.size > 0) return;
    clearTimeout(p.timer);
    this.pending.delete(id);
    p.missing.sort((a, b) => a - b);
    p.replies.sort((a, b) => a.slot - b.slot);
    p.done({ replies: p.replies, missing: p.missing });
  }
}
