import type http from "node:http";

/**
 * Security headers, set where the response is made: the API's JSON (nothing
 * to render, frame or sniff), and the pages served on the public port and by
 * the primary (demo, dashboard, health): no framing, no sniffing, no
 * referrer. No CSP on pages: their owners know their sources.
 */

export function setApiSecurityHeaders(res: http.ServerResponse): void {
  res.setHeader("x-content-type-options", "nosniff");
  res.setHeader("x-frame-options", "DENY");
  res.setHeader("referrer-policy", "no-referrer");
  res.setHeader("content-security-policy", "default-src 'none'; frame-ancestors 'none'");
  res.setHeader("cross-origin-resource-policy", "same-origin");
}

export function setPageSecurityHeaders(res: http.ServerResponse): void {
  res.setHeader("x-content-type-options", "nosniff");
  res.setHeader("x-frame-options", "DENY");
  res.setHeader("referrer-policy", "no-referrer");
}
