// The one subprocess runner of the batch-system backends: a batch system is then a command builder
// plus an output parser. Commands get a prefix (a submit host over ssh, a test pool's chroot), an
// environment built from scratch, a timeout, and fail with what the command said.
//
// The prefix may name the account a command acts for: {account}, {uid} and {gid} are replaced per
// call (e.g. [sudo, -n, -u, '{account}', --] or [chroot, '--userspec={uid}:{gid}', /pool/root]), so
// each user's jobs are submitted, and removed, as that user. The values come from the account
// resolver, never from a request, and are checked again here before they reach an argv.
import { spawn } from 'node:child_process';
import { POSIX_ACCOUNT } from '../../accounts/accounts.js';

export interface CommandResult {
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly code: number | null,
    readonly stderr: string,
    message: string,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

/** Who a command acts for: substituted into the prefix's {account}, {uid} and {gid}. */
export interface CommandAccount {
  name: string;
  uid: number;
  gid: number;
}

export interface CommandRunnerOptions {
  prefix: string[];
  /** The configured environment of every command (e.g. _condor_SCHEDD_HOST). */
  env: Record<string, string>;
  timeoutMs: number;
  /**
   * What the commands get from the gateway's own environment, when set there: nothing else of it
   * reaches them (it holds the gateway's secrets). Default: PATH, LANG, CONDOR_CONFIG.
   */
  inherit?: readonly string[];
  /**
   * The most a command may print (stdout and stderr together, in characters) before it is killed
   * and fails: a batch queue any user can fill (jobs tagged like the gateway's) must not fill the
   * gateway's memory. Default OUTPUT_LIMIT.
   */
  maxOutput?: number;
}

export interface RunOptions {
  /** Variables of this call (authentication), over the configured ones. */
  env?: Record<string, string>;
  /** The account the command acts for; required when the prefix names one. */
  as?: CommandAccount;
  input?: string;
}

export const INHERITED_VARIABLES = ['PATH', 'LANG', 'CONDOR_CONFIG'] as const;
const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';
/** 128 Mi characters: condor_q -json of 100,000 jobs with the attributes asked for is far less. */
export const OUTPUT_LIMIT = 128 * 1024 * 1024;
const PLACEHOLDER = /\{(account|uid|gid)\}/g;

/** Whether a prefix acts as the account of each call (it names {account}, {uid} or {gid}). */
export function prefixNamesAccount(prefix: readonly string[]): boolean {
  return prefix.some((w) => /\{(account|uid|gid)\}/.test(w));
}

/** The prefix for one account; refuses values that are not what an account resolver hands out. */
export function prefixFor(prefix: readonly string[], as: CommandAccount | undefined): string[] {
  if (!prefixNamesAccount(prefix)) return [...prefix];
  if (!as) throw new Error('this command prefix names an account ({account}, {uid} or {gid}) but the command acts for none');
  if (!POSIX_ACCOUNT.test(as.name)) throw new Error(`refusing account name ${JSON.stringify(as.name)} in a command prefix`);
  for (const id of [as.uid, as.gid]) {
    if (!Number.isSafeInteger(id) || id < 0) throw new Error(`refusing id ${String(id)} in a command prefix`);
  }
  const values = { account: as.name, uid: String(as.uid), gid: String(as.gid) };
  return prefix.map((w) => w.replace(PLACEHOLDER, (_, k: keyof typeof values) => values[k]));
}

export class CommandRunner {
  constructor(private readonly opts: CommandRunnerOptions) {}

  /** The whole environment of a command: built from scratch, never a copy of the gateway's. */
  environment(extra: Record<string, string> = {}): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of this.opts.inherit ?? INHERITED_VARIABLES) {
      const value = process.env[name];
      if (value !== undefined) env[name] = value;
    }
    env.PATH ??= DEFAULT_PATH;
    return { ...env, ...this.opts.env, ...extra };
  }

  /** Runs `argv` (after the prefix); rejects with CommandError on failure. */
  run(argv: string[], options: RunOptions = {}): Promise<CommandResult> {
    const name = argv[0] ?? '';
    let words: string[];
    try {
      words = [...prefixFor(this.opts.prefix, options.as), ...argv];
    } catch (err) {
      return Promise.reject(new CommandError(name, null, '', `${name} was not run: ${(err as Error).message}`));
    }
    const [cmd, ...args] = words;
    return new Promise((resolve, reject) => {
      const child = spawn(cmd!, args, {
        env: this.environment(options.env),
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      const limit = this.opts.maxOutput ?? OUTPUT_LIMIT;
      let tooMuch = false;
      const took = () => {
        if (tooMuch || stdout.length + stderr.length <= limit) return;
        tooMuch = true;
        child.kill('SIGKILL');
        stdout = '';
        reject(new CommandError(name, null, '', `${name} printed more than ${limit} characters and was stopped`));
      };
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (!tooMuch) stdout += d;
        took();
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        if (!tooMuch) stderr += d;
        took();
      });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new CommandError(name, null, stderr, `${name} did not finish within ${this.opts.timeoutMs / 1000} s`));
      }, this.opts.timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(new CommandError(name, null, '', `${name} could not be run: ${err.message}`));
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve({ stdout, stderr });
        else reject(new CommandError(name, code, stderr, `${name} failed (exit ${code}): ${lastLines(stderr || stdout)}`));
      });
      child.stdin.on('error', () => undefined); // a command that does not read its input
      child.stdin.end(options.input ?? '');
    });
  }
}

function lastLines(text: string, n = 4): string {
  return text.trim().split('\n').slice(-n).join(' ').slice(0, 600) || 'no output';
}
