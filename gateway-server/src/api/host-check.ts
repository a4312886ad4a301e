// The Host header a request may carry. A gateway on loopback is one person's (or a facility's
// behind its proxy): a web page the user visits can make its own name resolve to 127.0.0.1 (DNS
// rebinding) and then call the gateway as a same-origin page, with Origin and Host agreeing, so the
// origin check alone passes. Such a page names its own host in Host; refusing unknown names stops it.
import { isIP } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import { AppError } from '../errors.js';

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];

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
export function hostPolicy(cfg: { allowed_hosts: string[] | null; public_url: string | null }, listenHost: string): ((headers: IncomingHttpHeaders) => void) {
  let allowed: Set<string> | null;
  if (cfg.allowed_hosts) allowed = cfg.allowed_hosts.includes('*') ? null : new Set(cfg.allowed_hosts.map((h) => h.toLowerCase().replace(/\.$/, '')));
  else if (isLoopback(listenHost.replace(/^\[|\]$/g, ''))) {
    allowed = new Set(LOOPBACK_NAMES);
    if (cfg.public_url) allowed.add(new URL(cfg.public_url).hostname.replace(/^\[|\]$/g, '').toLowerCase());
  } else allowed = null;
  const names = allowed;
  return (headers) => {
    if (!names || headers.host === undefined) return;
    const name = hostName(headers.host);
    if (name !== null && (names.has(name) || (!cfg.allowed_hosts && name.endsWith('.localhost')) || (!cfg.allowed_hosts && isLoopback(name)))) return;
    throw new AppError(
      403,
      'host_not_allowed',
      `This gateway answers only to its own host names (allowed_hosts), not to ${JSON.stringify(headers.host.slice(0, 100))}: reach it at its own address, or have its admin add the name`,
    );
  };
}
