import { BlockList, isIPv4, isIPv6 } from "node:net";

/** An address block: `1.2.3.0/24`, `2001:db8::/32`, or a bare address (a /32 or /128). */
export interface IpRule {
  address: string;
  prefix: number;
  family: "ipv4" | "ipv6";
}

/** Parses a CIDR or a bare address; undefined if it is neither. */
export function parseIpRule(text: string): IpRule | undefined {
  const [address = "", prefixText, ...rest] = text.trim().split("/");
  if (rest.length > 0) return undefined;
  const family = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : undefined;
  if (!family) return undefined;
  const max = family === "ipv4" ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (prefix > max) return undefined;
  return { address, prefix, family };
}

const MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/** `::ffff:1.2.3.4` (what a dual-stack listener reports) as the IPv4 address it carries. */
export function plainAddress(ip: string): string {
  return MAPPED.exec(ip)?.[1] ?? ip;
}

/** Does an address fall in one of the blocks? IPv4-mapped IPv6 addresses count as IPv4. */
export interface IpMatcher {
  size: number;
  matches(ip: string): boolean;
}

export function createIpMatcher(rules: readonly string[], setting: string): IpMatcher {
  const list = new BlockList();
  for (const text of rules) {
    const r = parseIpRule(text);
    if (!r) throw new Error(`${setting}: not a CIDR: ${text}`);
    list.addSubnet(r.address, r.prefix, r.family);
  }
  return {
    size: rules.length,
    matches(ip) {
      if (rules.length === 0 || !ip) return false;
      const plain = plainAddress(ip);
      if (isIPv4(plain)) return list.check(plain, "ipv4");
      if (isIPv6(plain)) return list.check(plain, "ipv6");
      return false;
    },
  };
}
