/**
 * Real clients come from many addresses: the load generator spreads its
 * connections over BENCH_SOURCE_ADDRESSES loopback addresses (127.0.0.2, …;
 * all of 127.0.0.0/8 is loopback on Linux) rather than the servers raising
 * their per-address limits. Each address also has its own ephemeral ports,
 * so 20k connections do not run out of them.
 */
const COUNT = Math.max(1, Number(process.env.BENCH_SOURCE_ADDRESSES ?? 64));
let next = 0;

/** The next source address, round-robin; undefined when the target is not on loopback. */
export function nextSourceAddress(host) {
  if (!/^127\./.test(host) && host !== "localhost") return undefined;
  const i = next++ % COUNT;
  return `127.0.${Math.floor(i / 250)}.${2 + (i % 250)}`;
}

export const SOURCE_ADDRESSES = COUNT;
