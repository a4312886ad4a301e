import { afterEach, describe, expect, it, vi } from 'vitest';
import { LoginStates, LOGIN_COOKIE, sameOriginNext } from '../../src/auth/login-state.js';
import { AppError } from '../../src/errors.js';

const cookieOf = (setCookie: string) => `${LOGIN_COOKIE}=${setCookie.split(';')[0]!.split('=')[1]}`;

afterEach(() => vi.useRealTimers());

describe('login states', () => {
  it('finish only in the browser that began the login, once', () => {
    const states = new LoginStates<{ next: string }>(false);
    const { state, setCookie } = states.begin({ next: '/a' }, '10.0.0.1', '/');
    expect(setCookie).toMatch(/HttpOnly; SameSite=Lax; Max-Age=600$/);
    // the attacker's login, finished in the victim's browser (no cookie, or the victim's own)
    expect(() => states.finish(state, undefined, '/api/af/login')).toThrow(/started in another browser/);
    expect(() => states.finish(state, `${LOGIN_COOKIE}=not-it`, '/api/af/login')).toThrow(AppError);
    expect(states.finish(state, `other=1; ${cookieOf(setCookie)}`, '/api/af/login')).toEqual({ next: '/a' });
    expect(() => states.finish(state, cookieOf(setCookie), '/api/af/login')).toThrow(/unknown or expired/);
  });

  it('are Secure cookies when the gateway is reached over HTTPS', () => {
    expect(new LoginStates(true).begin({}, 'c', '/services/af-gateway/').setCookie).toMatch(/Path=\/services\/af-gateway\/;.*; Secure$/);
  });

  it('expire, and stay bounded however many logins anyone starts', () => {
    vi.useFakeTimers();
    const states = new LoginStates<number>(false);
    const first = states.begin(0, 'attacker', '/');
    for (let i = 1; i < 5000; i++) states.begin(i, 'attacker', '/');
    expect(states.size).toBeLessThanOrEqual(20); // one client's share
    for (let i = 0; i < 5000; i++) states.begin(i, `client-${i}`, '/');
    expect(states.size).toBeLessThanOrEqual(1000);
    expect(() => states.finish(first.state, cookieOf(first.setCookie), '/x')).toThrow(/unknown or expired/);
    const late = states.begin(1, 'someone', '/');
    vi.advanceTimersByTime(10 * 60_000 + 1);
    expect(() => states.finish(late.state, cookieOf(late.setCookie), '/x')).toThrow(/expired/);
  });
});

describe('where a login may send the browser', () => {
  it('keeps paths of this origin and refuses everything a browser would take elsewhere', () => {
    expect(sameOriginNext('/services/af-gateway/api/af/token?x=1#y', '/f')).toBe('/services/af-gateway/api/af/token?x=1#y');
    for (const evil of [
      '/\\evil.example',
      '//evil.example/x',
      '/\\/evil.example',
      'https://evil.example/',
      'javascript:alert(1)',
      '/\t/evil.example',
      ' /x',
      '',
      undefined,
    ]) {
      expect(sameOriginNext(evil, '/fallback'), String(evil)).toBe('/fallback');
    }
  });
});
