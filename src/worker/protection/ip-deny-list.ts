import { createIpMatcher } from "../../shared/cidr.js";

/**
 * IP_DENY_LIST: CIDRs (or single addresses) refused at the handshake, checked
 * against the client address (src/shared/client-address.ts).
 */
export function createIpDenyList(rules: readonly string[]): {
  size: number;
  denied(ip: string): boolean;
} {
  const list = createIpMatcher(rules, "IP_DENY_LIST");
  return { size: list.size, denied: (ip) => list.matches(ip) };
}
