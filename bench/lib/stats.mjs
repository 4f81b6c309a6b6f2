/**
 * Latency samples kept whole (a Float64Array that grows), so percentiles
 * are exact rather than bucketed. A million samples take 8 MB.
 */
export class Recorder {
  constructor(initial = 1 << 16) {
    this.values = new Float64Array(initial);
    this.count = 0;
  }

  add(v) {
    if (this.count === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2);
      bigger.set(this.values);
      this.values = bigger;
    }
    this.values[this.count++] = v;
  }

  summary() {
    const sorted = this.values.slice(0, this.count).sort();
    const at = (p) =>
      sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN;
    let sum = 0;
    for (const v of sorted) sum += v;
    return {
      count: sorted.length,
      mean: sorted.length ? sum / sorted.length : NaN,
      p50: at(0.5),
      p90: at(0.9),
      p99: at(0.99),
      max: sorted.length ? sorted[sorted.length - 1] : NaN,
    };
  }
}

export function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Wall-clock milliseconds with sub-millisecond precision, comparable across threads. */
export const nowMs = () => performance.timeOrigin + performance.now();

/** Waits until `count()` stops changing between two looks 300 ms apart, at most `maxMs`. */
export async function settle(count, maxMs) {
  const until = performance.now() + maxMs;
  let last = -1;
  while (performance.now() < until && count() !== last) {
    last = count();
    await sleep(300);
  }
}

/**
 * Counts the deliveries of one event to the bench's clients (`onEvent` goes
 * to openFleet), when the last one came, and the latency of each from the
 * send time in its payload (`t`, nowMs()). `reset()` starts a measured run;
 * `latencyFields()` gives the row fields that COLUMNS.delivery shows.
 */
export function deliveryCounter(event) {
  const d = {
    delivered: 0,
    latency: new Recorder(),
    lastAt: 0,
    onEvent: (name, payload) => {
      if (name !== event) return;
      d.delivered += 1;
      d.lastAt = performance.now();
      d.latency.add(nowMs() - payload.t);
    },
    reset(initial) {
      d.delivered = 0;
      d.latency = new Recorder(initial);
      d.lastAt = 0;
    },
    latencyFields() {
      const l = d.latency.summary();
      return { deliveryP50Ms: l.p50, deliveryP99Ms: l.p99, deliveryMaxMs: l.max };
    },
  };
  return d;
}
