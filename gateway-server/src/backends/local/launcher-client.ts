// Talks to the Python launcher in "serve" mode: one warm interpreter that forks schedulers, workers
// and steps on request, and does the file and signal work of its account. In single-user mode one
// launcher runs as the gateway; in multi-user mode one per user account, started through sudo as
// that account, so nothing it does has the gateway's rights. Restarted on demand if it dies.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import type { FastifyBaseLogger } from 'fastify';

export interface LaunchSpec {
  role: 'scheduler' | 'worker';
  title: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  log: string;
  pidfile: string;
  /** The scheduler's dashboard speaks TLS and takes only clients with the cluster's certificate. */
  dashboard_tls?: boolean;
  /** Autogroup nice of the new session (or nice of the process where autogroup is off); 0 or absent: left alone. */
  session_nice?: number;
}

/** A started process: its pid and its start time in clock ticks (guards against pid reuse). */
export interface Started {
  pid: number;
  start_ticks: string;
}

type Answer = Record<string, unknown>;

const MAX_ANSWER_BYTES = 1 << 20;

interface Pending {
  resolve: (answer: Answer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class Launcher {
  private child: ChildProcess | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** Told when a step the launcher started has ended (its pid). */
  onExited: ((pid: number) => void) | undefined;
  /** When the last request was answered (or sent): for closing idle launchers. */
  lastUsed = Date.now();

  constructor(
    /** The command that runs `af_gateway_launcher.py serve` (directly, or through sudo). */
    private readonly argv: string[],
    private readonly env: Record<string, string>,
    private readonly logFile: string,
    private readonly log: FastifyBaseLogger,
    private readonly label = 'the Python launcher',
  ) {}

  /** Starts the interpreter now so that the first cluster does not pay for its imports. */
  warmUp(): void {
    this.ensure();
  }

  get busy(): boolean {
    return this.pending.size > 0;
  }

  private ensure(): ChildProcess {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return this.child;
    const fd = openSync(this.logFile, 'a', 0o600);
    const [cmd, ...args] = this.argv;
    const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', fd], env: this.env });
    closeSync(fd);
    child.on('error', (err) => this.failAll(new Error(`cannot run ${cmd}: ${err.message}`)));
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      this.failAll(new Error(`${this.label} exited (${signal ?? `code ${code}`}); see ${this.logFile}`));
    });
    child.stdin!.on('error', () => undefined); // a dead launcher is reported by 'exit'
    // Answers are short lines; one that is not (a launcher gone wrong) ends it instead of the gateway's memory.
    let pending = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        this.onLine(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
      if (pending.length > MAX_ANSWER_BYTES) {
        this.log.error(`${this.label} wrote an answer longer than ${MAX_ANSWER_BYTES} bytes; stopping it`);
        pending = '';
        child.kill('SIGKILL');
      }
    });
    this.child = child;
    return child;
  }

  private onLine(line: string): void {
    let msg: Answer & { id?: number; error?: string; ready?: boolean };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      this.log.warn({ line: line.slice(0, 200) }, `unexpected output from ${this.label}`);
      return;
    }
    if (typeof msg.exited === 'number') {
      this.onExited?.(msg.exited);
      return;
    }
    if (msg.ready) {
      this.log.info(`${this.label} ready`);
      return;
    }
    const p = msg.id === undefined ? undefined : this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id!);
    clearTimeout(p.timer);
    this.lastUsed = Date.now();
    if (typeof msg.error === 'string') p.reject(new Error(msg.error));
    else p.resolve(msg);
  }

  private failAll(err: Error): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(err);
      this.pending.delete(id);
    }
  }

  /** Sends one request ({op, ...}) and resolves with the launcher's answer. */
  request(body: Record<string, unknown>, timeoutMs = 120_000): Promise<Answer> {
    const child = this.ensure();
    const id = this.nextId++;
    this.lastUsed = Date.now();
    return new Promise<Answer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.label} did not answer within ${timeoutMs / 1000} s; see ${this.logFile}`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      child.stdin!.write(JSON.stringify({ ...body, id }) + '\n');
    });
  }

  async fork(spec: LaunchSpec, timeoutMs = 120_000): Promise<Started> {
    return toStarted(await this.request({ op: 'fork', ...spec }, timeoutMs), 'fork');
  }

  close(): void {
    this.child?.stdin?.end();
    this.child = undefined;
  }
}

export function toStarted(answer: Answer, what: string): Started {
  if (typeof answer.pid !== 'number') throw new Error(`${what} failed: the launcher gave no pid`);
  return { pid: answer.pid, start_ticks: typeof answer.start_ticks === 'string' ? answer.start_ticks : '' };
}

/** Starts one process with a fresh interpreter, detached into its own session (single-user mode without prefork). */
export function execLaunch(python: string, script: string, spec: LaunchSpec, env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [script, 'exec', JSON.stringify(spec)], { detached: true, stdio: 'ignore', env });
    child.once('error', reject);
    child.once('spawn', () => {
      child.unref();
      resolve(child.pid!);
    });
  });
}
