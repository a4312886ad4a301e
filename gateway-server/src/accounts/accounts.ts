// Which OS account a gateway user's processes run as. A facility's gateway never runs user code as
// itself: the local backend starts each user's launcher as this account, the batch backends submit
// as it, Kubernetes pods get its uid. Accounts are looked up through NSS (getent), so LDAP/SSSD
// accounts work as well as /etc/passwd ones, and are refused when they could reach privileges.
import { execFile } from 'node:child_process';
import { AppError } from '../errors.js';
import { ConfigError } from '../config.js';

export interface UserAccount {
  /** POSIX account name. */
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface AccountResolver {
  /** The account of a gateway user, or a 403 AppError that says why there is none. */
  resolve(user: string): Promise<UserAccount>;
}

export interface AccountsConfig {
  name_template: string;
  uid_min: number;
  uid_max: number;
  group: string | null;
  /** Make a missing account (through `creator`). */
  create?: boolean;
}

/** Makes the account `name` (a member of the group, a uid in the range) or throws why not. */
export type AccountCreator = (name: string, group: string, uidMin: number, uidMax: number) => Promise<void>;

/** The privileged helper the facility allows through sudo (accounts.create). */
export function sudoAccountCreator(sudo: string, python: string, script: string): AccountCreator {
  return (name, group, uidMin, uidMax) =>
    new Promise((resolve, reject) => {
      execFile(
        sudo,
        ['-n', python, script, 'create', name, group, String(uidMin), String(uidMax)],
        { env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' }, timeout: 60_000 },
        (err, _out, stderr) => (err ? reject(new Error(stderr.trim().split('\n').pop() || err.message)) : resolve()),
      );
    });
}

/** A POSIX account name as useradd accepts it portably (no leading digit or dash, ≤ 32 bytes). */
export const POSIX_ACCOUNT = /^[a-z_][a-z0-9_-]{0,30}[a-z0-9_$-]?$/;

type Lookup = (db: 'passwd' | 'group', key: string) => Promise<string | null>;

/** `getent DB KEY`: the entry, or null when there is none (exit code 2). */
export const getent: Lookup = (db, key) =>
  new Promise((resolve, reject) => {
    execFile('getent', [db, key], { env: { PATH: '/usr/bin:/bin' }, timeout: 10_000 }, (err, stdout) => {
      if (!err) return resolve(stdout.trim().split('\n')[0] ?? null);
      if ((err as { code?: unknown }).code === 2) return resolve(null);
      reject(new Error(`getent ${db} ${key} failed: ${err.message}`));
    });
  });

const CACHE_MS = 60_000;

export class PosixAccounts implements AccountResolver {
  private readonly cache = new Map<string, { at: number; result: Promise<UserAccount> }>();

  constructor(
    private readonly config: AccountsConfig,
    /** The gateway's own uid: never handed out to a user. */
    private readonly gatewayUid: number = process.getuid?.() ?? -1,
    private readonly lookup: Lookup = getent,
    private readonly creator?: AccountCreator,
  ) {
    if (config.create && !config.group)
      throw new ConfigError('accounts.create needs accounts.group: the group created accounts join (and the sudo rule names)');
    if (config.create && config.name_template.trim() === '{user}') {
      // Else a user could claim a name that the system's own rules already grant something to (admin, wheel, …).
      throw new ConfigError(
        "accounts.create needs an accounts.name_template with a prefix or suffix of its own (e.g. 'af-{user}'), so created accounts never take names the system's rules already mean",
      );
    }
  }

  accountName(user: string): string {
    return this.config.name_template.replaceAll('{user}', user);
  }

  resolve(user: string): Promise<UserAccount> {
    const hit = this.cache.get(user);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.result;
    const result = this.lookUp(user);
    this.cache.set(user, { at: Date.now(), result });
    // A refusal is not cached for long: the admin may be creating the account right now.
    result.catch(() => this.cache.delete(user));
    return result;
  }

  private async lookUp(user: string): Promise<UserAccount> {
    const name = this.accountName(user);
    const refuse = (why: string) =>
      new AppError(403, 'no_account', `User ${user} has no usable account on this facility: ${why}. Ask the facility's administrators.`);
    if (!POSIX_ACCOUNT.test(name)) throw refuse(`${JSON.stringify(name)} is not a valid POSIX account name (accounts.name_template)`);
    let entry = await this.lookup('passwd', name);
    if (!entry && this.config.create && this.creator) {
      try {
        await this.creator(name, this.config.group!, this.config.uid_min, this.config.uid_max);
      } catch (err) {
        throw refuse(`the account ${name} could not be created (${(err as Error).message})`);
      }
      entry = await this.lookup('passwd', name);
    }
    if (!entry) throw refuse(`there is no account ${name}`);
    const [, , uidText, gidText, , home] = entry.split(':');
    const uid = Number(uidText);
    const gid = Number(gidText);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw refuse(`the account ${name} has no numeric uid`);
    if (uid === this.gatewayUid) throw refuse(`the account ${name} is the gateway's own`);
    if (uid < this.config.uid_min || uid > this.config.uid_max) {
      throw refuse(`the account ${name} has uid ${uid}, outside accounts.uid_min..uid_max (${this.config.uid_min}..${this.config.uid_max})`);
    }
    if (gid === 0) throw refuse(`the account ${name} has the root group as its primary group`);
    if (this.config.group) {
      const group = await this.lookup('group', this.config.group);
      if (!group) throw refuse(`the group ${this.config.group} (accounts.group) does not exist`);
      const [, , groupGid, members] = group.split(':');
      const isMember = Number(groupGid) === gid || (members ?? '').split(',').includes(name);
      if (!isMember) throw refuse(`the account ${name} is not in the group ${this.config.group}`);
    }
    return { name, uid, gid, home: home ?? '/' };
  }
}
