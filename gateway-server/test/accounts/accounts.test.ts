import { describe, expect, it } from 'vitest';
import { PosixAccounts } from '../../src/accounts/accounts.js';
import { AppError } from '../../src/errors.js';
import { checkSingleUser } from '../../src/server.js';
import { resolveConfig, ConfigError } from '../../src/config.js';
import { refuseUnsafeName } from '../../src/auth/identify.js';

// A name service with a few accounts, as getent would answer.
const passwd: Record<string, string> = {
  'af-alice': 'af-alice:x:1001:1001::/home/af-alice:/bin/sh',
  'af-bob': 'af-bob:x:1002:1002::/home/af-bob:/bin/sh',
  'af-daemon': 'af-daemon:x:105:105::/nonexistent:/usr/sbin/nologin',
  'af-rootgroup': 'af-rootgroup:x:1003:0::/home/x:/bin/sh',
  'af-gw': 'af-gw:x:1500:1500::/var/lib/af-gw:/usr/sbin/nologin',
};
const groups: Record<string, string> = { 'af-users': 'af-users:x:2000:af-alice' };
const lookup = async (db: 'passwd' | 'group', key: string) => (db === 'passwd' ? passwd[key] : groups[key]) ?? null;
const config = { name_template: 'af-{user}', uid_min: 1000, uid_max: 59999, group: null };

async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).statusCode).toBe(403);
  return (err as AppError).message;
}

describe('accounts', () => {
  it('maps a user to the templated account', async () => {
    const a = new PosixAccounts(config, 1500, lookup);
    expect(await a.resolve('alice')).toEqual({ name: 'af-alice', uid: 1001, gid: 1001, home: '/home/af-alice' });
  });

  it('refuses accounts that could reach privileges or are not the users own, saying why', async () => {
    const a = new PosixAccounts(config, 1500, lookup);
    expect(await refusal(a.resolve('carol'))).toMatch(/there is no account af-carol/);
    expect(await refusal(a.resolve('daemon'))).toMatch(/uid 105, outside accounts.uid_min/);
    expect(await refusal(a.resolve('rootgroup'))).toMatch(/root group/);
    expect(await refusal(a.resolve('gw'))).toMatch(/the gateway's own/);
    expect(await refusal(new PosixAccounts({ ...config, name_template: '{user}' }, 1500, lookup).resolve('Alice.Smith'))).toMatch(
      /not a valid POSIX account name/,
    );
  });

  it('with accounts.group, only members are used', async () => {
    const a = new PosixAccounts({ ...config, group: 'af-users' }, 1500, lookup);
    expect((await a.resolve('alice')).name).toBe('af-alice');
    expect(await refusal(a.resolve('bob'))).toMatch(/not in the group af-users/);
    expect(await refusal(new PosixAccounts({ ...config, group: 'nope' }, 1500, lookup).resolve('alice'))).toMatch(/group nope .* does not exist/);
  });

  it('creates a missing account through the facility helper, in the group and range (accounts.create)', async () => {
    const made: unknown[] = [];
    const db = { ...passwd };
    const creator = async (name: string, group: string, min: number, max: number) => {
      made.push([name, group, min, max]);
      db[name] = `${name}:x:1010:1010::/home/${name}:/bin/sh`;
    };
    const a = new PosixAccounts(
      { ...config, group: 'af-users', create: true },
      1500,
      async (d, k) => (d === 'passwd' ? db[k] : `af-users:x:2000:af-alice,af-erin`) ?? null,
      creator,
    );
    expect((await a.resolve('erin')).uid).toBe(1010);
    expect(made).toEqual([['af-erin', 'af-users', 1000, 59999]]);
    const failing = new PosixAccounts({ ...config, group: 'af-users', create: true }, 1500, lookup, async () => {
      throw new Error('useradd failed with exit code 9');
    });
    expect(await refusal(failing.resolve('frank'))).toMatch(/could not be created \(useradd failed/);
    expect(() => new PosixAccounts({ ...config, create: true }, 1500, lookup)).toThrow(/accounts.create needs accounts.group/);
  });

  it('refuses user names that could become paths, options or quotes, whatever the authenticator', () => {
    for (const name of ['..', '.hidden', '-rf', 'a/b', 'a b', 'x"y', 'a\nb', '', 'x'.repeat(65)]) {
      expect(() => refuseUnsafeName({ name, groups: [], admin: false }), name).toThrow(/1-64 characters/);
    }
    for (const name of ['alice', 'a1b2c3d4-5e6f', 'alice@cern.ch', 'Bob.Smith+cms']) refuseUnsafeName({ name, groups: [], admin: false });
  });
});

describe('single-user mode', () => {
  const cfg = (extra: Record<string, unknown>) => resolveConfig({ backend: { local: { single_user: true } }, ...extra });

  it('is accepted for one person on loopback', () => {
    expect(() => checkSingleUser(cfg({}), '127.0.0.1')).not.toThrow();
  });

  it('is refused with anything that admits several people, naming the key', () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ auth: { type: 'oidc', oidc: { issuer: 'https://iam.example.org/' } } }, '127.0.0.1', /auth.type is oidc/],
      [{ auth: { type: 'jupyterhub' } }, '127.0.0.1', /auth.type is jupyterhub/],
      [{ auth: { simple: { password: 'shared' } } }, '127.0.0.1', /auth.simple.password is set/],
      [{}, '0.0.0.0', /listens on 0.0.0.0, not on loopback/],
    ];
    for (const [extra, host, why] of cases) {
      expect(() => checkSingleUser(cfg(extra), host)).toThrow(ConfigError);
      expect(() => checkSingleUser(cfg(extra), host)).toThrow(why);
      expect(() => checkSingleUser(cfg(extra), host)).toThrow(/backend.local.single_user/);
    }
  });

  it('is off unless asked for (a config file means a facility), on in the embedded default', async () => {
    expect(resolveConfig({}).backend.local.single_user).toBe(false);
    const { loadConfigFile } = await import('../../src/config.js');
    expect(loadConfigFile(undefined).backend.local.single_user).toBe(true);
  });
});
