/**
 * The last few log lines of one process, for the dashboard. Lines are kept as
 * the serialized (already redacted) strings pino wrote, so keeping one costs
 * a pointer; they are parsed only when a dashboard asks.
 */

export interface LogSlice {
  /** Sequence number of the last line in this process (0 before any). */
  seq: number;
  lines: string[];
}

export interface LogRing {
  push(line: string): void;
  /** Lines after `after` (oldest first), at most `max` of the newest. */
  since(after: number, max: number): LogSlice;
}

const MAX_LINE_CHARS = 2_000;

export function createLogRing(capacity = 200): LogRing {
  const lines: string[] = new Array(capacity);
  let seq = 0;
  return {
    push(line) {
      seq += 1;
      lines[seq % capacity] = line.length > MAX_LINE_CHARS ? line.slice(0, MAX_LINE_CHARS) : line;
    },
    since(after, max) {
      // A cursor from a previous process (larger than ours) starts over.
      const from = after > seq ? 0 : after;
      const count = Math.min(seq - from, capacity, max);
      const out: string[] = [];
      for (let i = seq - count + 1; i <= seq; i++) out.push(lines[i % capacity]!);
      return { seq, lines: out };
    },
  };
}
