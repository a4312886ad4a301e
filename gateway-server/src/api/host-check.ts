// The Host header a request may carry. A gateway on loopback is one person's (or a facility's
// behind its proxy): a web page the user visits can make its own name resolve to 127.0.0.1 (DNS
// rebinding) and then call the gateway as a same-origin page, with Origin and Host agreeing, so the
// origin check alone passes. Such a page names its own host in Host; refusing unknown names stops it.
import { isIP } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import { AppError } from '../errors.js';

function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

/** The name in a Host header, lower-cased, without port or IPv6 brackets; null if malformed. */
export function hostName(header: string): string | null {
  const m = /^(?:\[([0-9a-f:.]+)\]|([a-z0-9.-]+))(?::\d{1,5})?$/i.exec(header.trim());
  if (!m) return null;
  return (m[1] ?? m[2]!).toLowerCase().replace(/\.$/, '');
}

/**
 * Which Host names a gateway answers to: `allowed_hosts` if the admin set it ("*": any), else on a
 * loopback listener the loopback names and public_url's host, else any (a facility's proxy in front
 * decides what reaches it).
 */
export function hostPolicy(cfg: { allowed_hosts: string[] | null; public_url: string | null }, listenHost: string): (headers: IncomingHttpHeaders) => void {
  const bare = (h: string) =>
    h
      .replace(/^\[|\]$/g, '')
      .replace(/\.$/, '')
      .toLowerCase();
  // null: any host; else the names allowed, plus every loopback name when the admin listed none
  let named: Set<string> | null = null;
  let loopbackToo = false;
  if (cfg.allowed_hosts) named = cfg.allowed_hosts.includes('*') ? null : new Set(cfg.allowed_hosts.map(bare));
  else if (isLoopback(bare(listenHost))) {
    named = new Set(cfg.public_url ? [bare(new URL(cfg.public_url).hostname)] : []);
    loopbackToo = true;
  }
  return (headers) => {
    if (!named || headers.host === undefined) return;
    const name = hostName(headers.host);
    if (name !== null && (named.has(name) || (loopbackToo && isLoopback(name)))) return;
    throw new AppError(
      403,
      'host_not_allowed',
      `This gateway answers only to its own host names (allowed_hosts), not to ${JSON.stringify(headers.host.slice(0, 100))}: reach it at its own address, or have its admin add the name`,
    );
  };
}
