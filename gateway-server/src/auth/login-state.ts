// The state of a browser login in flight (OIDC code flow or the Hub's OAuth), from the redirect to
// the provider until its callback. Anyone may start a login, so the table is bounded (in total and
// per client address) and short-lived; and the state is bound to the browser that started it by a
// cookie, so an attacker cannot make a victim's browser finish the attacker's login (login CSRF).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { AppError } from '../errors.js';
import { readCookie } from './sessions.js';

export const LOGIN_COOKIE = 'af-gateway-login';
const TTL_MS = 10 * 60_000;
const MAX_TOTAL = 1000;
const MAX_PER_CLIENT = 20;

interface Entry<T> {
  data: T;
  at: number;
  client: string;
  /** SHA-256 of the browser's cookie value. */
  binding: Buffer;
}

const digest = (v: string) => createHash('sha256').update(v).digest();

export class LoginStates<T> {
  /** Insertion-ordered: the first entries are the oldest. */
  private readonly entries = new Map<string, Entry<T>>();

  constructor(private readonly secure: boolean) {}

  /** A new login: its `state` for the provider and the Set-Cookie that binds it to this browser. */
  begin(data: T, client: string, cookiePath: string): { state: string; setCookie: string } {
    const now = Date.now();
    for (const [k, e] of this.entries) {
      if (now - e.at <= TTL_MS) break; // the rest are younger
      this.entries.delete(k);
    }
    const mine = [...this.entries].filter(([, e]) => e.client === client);
    for (const [k] of mine.slice(0, Math.max(0, mine.length - MAX_PER_CLIENT + 1))) this.entries.delete(k);
    while (this.entries.size >= MAX_TOTAL) this.entries.delete(this.entries.keys().next().value!);
    const state = randomBytes(16).toString('base64url');
    const nonce = randomBytes(16).toString('base64url');
    this.entries.set(state, { data, at: now, client, binding: digest(nonce) });
    const attrs = [`${LOGIN_COOKIE}=${nonce}`, `Path=${cookiePath}`, 'HttpOnly', 'SameSite=Lax', `Max-Age=${TTL_MS / 1000}`];
    if (this.secure) attrs.push('Secure');
    return { state, setCookie: attrs.join('; ') };
  }

  /** The login of this callback, once: refused when unknown, expired or started by another browser. */
  finish(state: string | undefined, cookieHeader: string | undefined, restartAt: string): T {
    const e = state ? this.entries.get(state) : undefined;
    if (!e || Date.now() - e.at > TTL_MS) {
      if (state) this.entries.delete(state);
      throw new AppError(400, 'login_expired', `This login is unknown or expired; start again at ${restartAt}`);
    }
    const nonce = readCookie(cookieHeader, LOGIN_COOKIE);
    if (!nonce || !timingSafeEqual(digest(nonce), e.binding)) {
      throw new AppError(400, 'login_not_yours', `This login was started in another browser (or its cookie was refused); start again at ${restartAt}`);
    }
    this.entries.delete(state!);
    return e.data;
  }

  get size(): number {
    return this.entries.size;
  }
}

/**
 * Where a login may send the browser afterwards: a path on this gateway's own origin, or the
 * fallback. Parsed as a URL, as the browser will (`/\evil.example` is another host to it).
 */
export function sameOriginNext(next: string | undefined, fallback: string): string {
  if (!next || !next.startsWith('/') || next.length > 2048) return fallback;
  const probe = 'http://gateway.invalid';
  let url: URL;
  try {
    url = new URL(next, probe);
  } catch {
    return fallback;
  }
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this refuses
  if (url.origin !== probe || next.startsWith('//') || next.includes('\\') || /[\u0000-\u001f]/.test(next)) return fallback;
  return url.pathname + url.search + url.hash;
}
