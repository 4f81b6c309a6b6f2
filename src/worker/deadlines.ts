/**
 * Deadlines of many items (sockets) on one timer per worker, instead of a
 * Timeout, a closure and a map entry per socket: the token expiry of every
 * connected socket and the register timeout of every new one. Items whose
 * deadlines fall in the same `resolutionMs` slot share a Set; one timer is
 * armed for the earliest slot. A deadline fires at the end of its slot, at
 * most `resolutionMs` late, never early.
 *
 * The caller says the deadline again to delete an item (it can compute it:
 * the token's `exp`, the connection's time), so nothing per item is kept
 * beyond its Set entry.
 */

/** setTimeout fires at once past 2^31-1 ms (~24.8 days): longer waits are chained. */
const MAX_TIMER_MS = 2_147_483_647;

export interface Deadlines<T> {
  add(item: T, dueMs: number): void;
  /** `dueMs` as given to add. */
  delete(item: T, dueMs: number): void;
  /** Items waiting. */
  size(): number;
  close(): void;
}

export function createDeadlines<T>(o: {
  resolutionMs: number;
  onDue: (item: T) => void;
  /** A throwing onDue: the other items due still run. */
  onError: (err: unknown) => void;
}): Deadlines<T> {
  const { resolutionMs, onDue, onError } = o;
  const slots = new Map<number, Set<T>>();
  // A min-heap of slot keys. A slot emptied by deletions leaves its key
  // behind; it is skipped when it comes up (so a key may appear twice), and
  // the heap is rebuilt from the live slots when such keys are over half.
  let heap: number[] = [];
  let count = 0;
  let timer: NodeJS.Timeout | undefined;
  let armedFor = Infinity;

  const slotOf = (dueMs: number) => Math.ceil(dueMs / resolutionMs) * resolutionMs;

  const push = (key: number) => {
    let i = heap.push(key) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]! <= key) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = key;
  };
  const pop = () => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= heap.length) break;
        const c = l + 1 < heap.length && heap[l + 1]! < heap[l]! ? l + 1 : l;
        if (heap[c]! >= last) break;
        heap[i] = heap[c]!;
        i = c;
      }
      heap[i] = last;
    }
    return top;
  };

  const arm = () => {
    while (heap.length > 0 && !slots.has(heap[0]!)) pop();
    const next = heap.length > 0 ? heap[0]! : Infinity;
    if (next === armedFor) return;
    clearTimeout(timer);
    timer = undefined;
    armedFor = next;
    if (next === Infinity) return;
    timer = setTimeout(fire, Math.max(0, Math.min(next - Date.now(), MAX_TIMER_MS)));
    timer.unref();
  };

  function fire() {
    timer = undefined;
    armedFor = Infinity;
    const t = Date.now();
    while (heap.length > 0 && heap[0]! <= t) {
      const key = pop();
      const due = slots.get(key);
      if (!due) continue;
      slots.delete(key);
      count -= due.size;
      for (const item of due) {
        try {
          onDue(item);
        } catch (err) {
          onError(err);
        }
      }
    }
    arm();
  }

  return {
    add(item, dueMs) {
      const key = slotOf(dueMs);
      let slot = slots.get(key);
      if (!slot) {
        slot = new Set();
        slots.set(key, slot);
        push(key);
      }
      if (slot.has(item)) return;
      slot.add(item);
      count++;
      if (key < armedFor) arm();
    },
    delete(item, dueMs) {
      const key = slotOf(dueMs);
      const slot = slots.get(key);
      if (!slot?.delete(item)) return;
      count--;
      // The timer stays armed: when it fires for an emptied slot it moves on.
      if (slot.size > 0) return;
      slots.delete(key);
      // Sockets that come and go with far-off expiries would leave keys
      // behind until their time: a sorted array is a heap.
      if (heap.length > 64 && heap.length > 2 * slots.size) {
        heap = [...slots.keys()].sort((a, b) => a - b);
      }
    },
    size: () => count,
    close() {
      clearTimeout(timer);
      timer = undefined;
      armedFor = Infinity;
    },
  };
}
