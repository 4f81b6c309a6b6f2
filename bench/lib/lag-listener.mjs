import dgram from "node:dgram";

/**
 * The bench's side of lag-probe.mjs: collects the datagrams and answers
 * "what was the event-loop delay of the workers between two instants".
 */
export async function startLagListener() {
  const samples = [];
  const sock = dgram.createSocket("udp4");
  sock.on("message", (buf) => {
    try {
      samples.push({ at: performance.now(), ...JSON.parse(buf.toString()) });
    } catch {}
  });
  await new Promise((resolve) => sock.bind(0, "127.0.0.1", resolve));
  return {
    port: sock.address().port,
    now: () => performance.now(),
    /**
     * Over [from, to] (performance.now() instants) and one role: the worst
     * per-interval p99 of any process, the median interval p99, the max delay.
     */
    between(from, to, role = "worker") {
      const win = samples.filter((s) => s.at >= from && s.at <= to && s.role === role);
      if (win.length === 0) return { windows: 0, worstP99Ms: NaN, medianP99Ms: NaN, maxMs: NaN };
      const p99s = win.map((s) => s.p99).sort((a, b) => a - b);
      return {
        windows: win.length,
        worstP99Ms: p99s[p99s.length - 1],
        medianP99Ms: p99s[Math.floor(p99s.length / 2)],
        maxMs: Math.max(...win.map((s) => s.max)),
      };
    },
    /** The latest memory report of every process seen since `from`. */
    memory(from = 0) {
      const last = new Map();
      for (const s of samples) {
        if (s.at >= from && s.mem)
          last.set(s.pid, { role: s.role, ...s.mem, ...(s.ipc ? { ipc: s.ipc } : {}) });
      }
      return [...last].map(([pid, m]) => ({ pid, ...m }));
    },
    close: () => sock.close(),
  };
}
