import { BlockList, isIPv4, isIPv6 } from "node:net";
import { parseIpRule } from "../../shared/cidr.js";

/**
 * IP_DENY_LIST: CIDRs (or single addresses) refused at the handshake.
 * IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, what a dual-stack listener
 * reports) are checked as the IPv4 address they carry.
 */

const MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

export function createIpDenyList(rules: readonly string[]): {
  size: number;
  denied(ip: string): boolean;
} {
  const list = new BlockList();
  let size = 0;
  for (const text of rules) {
    const r = parseIpRule(text);
    if (!r) throw new Error(`IP_DENY_LIST: not a CIDR: ${text}`);
    list.addSubnet(r.address, r.prefix, r.family);
    size++;
  }
  return {
    size,
    denied(ip) {
      if (size === 0 || !ip) return false;
      const v4 = MAPPED.exec(ip)?.[1];
      if (v4) return list.check(v4, "ipv4");
      if (isIPv4(ip)) return list.check(ip, "ipv4");
      if (isIPv6(ip)) return list.check(ip, "ipv6");
      return false;
    },
  };
}
