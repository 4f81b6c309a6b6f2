import { isIPv4, isIPv6 } from "node:net";

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
