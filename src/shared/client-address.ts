import { isIP } from "node:net";
import { createIpMatcher, plainAddress } from "./cidr.js";

/**
 * Who the client is (CONTRACT "Client addresses"). By default the TCP peer.
 * When the peer is one of TRUSTED_PROXIES, its `X-Forwarded-For` is read
 * from the right: each proxy appends the address it received the request
 * from, so the rightmost entry that is not itself a trusted proxy is the
 * client; everything left of it was written by the client and may be forged.
 * From an untrusted peer the header is ignored.
 *
 * Per-address limits, the deny list, logs and the dashboard all use this.
 */

export type ClientAddressOf = (
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
) => string;

/** `1.2.3.4:5678` and `[::1]:80` as the bare address; undefined if it is not one. */
function entryAddress(entry: string): string | undefined {
  let e = entry.trim();
  if (e.startsWith("[")) e = e.slice(1, e.indexOf("]") === -1 ? undefined : e.indexOf("]"));
  else if (/^\d+\.\d+\.\d+\.\d+:\d+$/.test(e)) e = e.slice(0, e.indexOf(":"));
  return isIP(e) ? plainAddress(e) : undefined;
}

export function createClientAddress(trustedProxies: readonly string[]): ClientAddressOf {
  const trusted = createIpMatcher(trustedProxies, "TRUSTED_PROXIES");
  return (peer, forwardedFor) => {
    const self = plainAddress(peer ?? "");
    if (trusted.size === 0 || forwardedFor === undefined || !trusted.matches(self)) return self;
    const entries = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor).split(
      ",",
    );
    let client = self;
    for (let i = entries.length - 1; i >= 0; i--) {
      const address = entryAddress(entries[i]!);
      // Garbage where an address belongs: the last hop we trust is all we know.
      if (address === undefined) return client;
      client = address;
      if (!trusted.matches(address)) return address;
    }
    return client;
  };
}
