/**
 * The offline queue: requests made while the client is not registered wait
 * here, in order, and are sent after the next registration.
 *
 * Overflow policy when `max` is reached:
 * - "reject-new" (default): the new request is refused at once, so the
 *   caller learns immediately and the order of what was queued is kept;
 * - "drop-oldest": the oldest queued request is refused to make room,
 *   for apps where the newest state matters more than the history.
 * Either way the refused request's promise rejects with QUEUE_FULL; nothing
 * is dropped silently. A queued request also leaves when its deadline passes.
 */
export type OverflowPolicy = "reject-new" | "drop-oldest";

export class BoundedQueue<T> {
  private items: T[] = [];

  constructor(
    readonly max: number,
    readonly overflow: OverflowPolicy = "reject-new",
  ) {}

  get size(): number {
    return this.items.length;
  }

  /** Adds `item`; says whether it was accepted and which item was dropped for it. */
  push(item: T): { accepted: boolean; dropped?: T } {
    if (this.items.length < this.max) {
      this.items.push(item);
      return { accepted: true };
    }
    if (this.overflow === "reject-new" || this.max === 0) return { accepted: false };
    const dropped = this.items.shift() as T;
    this.items.push(item);
    return { accepted: true, dropped };
  }

  remove(item: T): boolean {
    const i = this.items.indexOf(item);
    if (i < 0) return false;
    this.items.splice(i, 1);
    return true;
  }

  /** Empties the queue, oldest first. */
  drain(): T[] {
    const out = this.items;
    this.items = [];
    return out;
  }
}
