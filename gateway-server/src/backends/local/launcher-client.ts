// Talks to the Python launcher in "serve" mode: one warm interpreter that forks schedulers and
// workers on request. Restarted on demand if it dies.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
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
}

interface Pending {
  resolve: (pid: number) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class PreforkLauncher {
  private child: ChildProcess | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  constructor(
    private readonly python: string,
    private readonly script: string,
    private readonly logFile: string,
    private readonly log: FastifyBaseLogger,
  ) {}

  /** Starts the interpreter now so that the first cluster does not pay for its imports. */
  warmUp(): void {
    this.ensure();
  }

  private ensure(): ChildProcess {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return this.child;
    const fd = openSync(this.logFile, 'a', 0o600);
    const child = spawn(this.python, [this.script, 'serve'], { stdio: ['pipe', 'pipe', fd] });
    closeSync(fd);
    child.on('error', (err) => this.failAll(new Error(`cannot run ${this.python}: ${err.message}`)));
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      this.failAll(new Error(`the Python launcher exited (${signal ?? `code ${code}`}); see ${this.logFile}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => this.onLine(line));
    this.child = child;
    return child;
  }

  private onLine(line: string): void {
    let msg: { id?: number; pid?: number; error?: string; ready?: boolean };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      this.log.warn({ line }, 'unexpected output from the Python launcher');
      return;
    }
    if (msg.ready) {
      this.log.info('Python launcher ready');
      return;
    }
    const p = msg.id === undefined ? undefined : this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id!);
    clearTimeout(p.timer);
    if (typeof msg.pid === 'number') p.resolve(msg.pid);
    else p.reject(new Error(`fork failed: ${msg.error ?? 'unknown error'}`));
  }

  private failAll(err: Error): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(err);
      this.pending.delete(id);
    }
  }

  fork(spec: LaunchSpec, timeoutMs = 120_000): Promise<number> {
    const child = this.ensure();
    const id = this.nextId++;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`the Python launcher did not answer within ${timeoutMs / 1000} s; see ${this.logFile}`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      child.stdin!.write(JSON.stringify({ ...spec, id }) + '\n');
    });
  }

  close(): void {
    this.child?.stdin?.end();
    this.child = undefined;
  }
}

/** Starts one process with a fresh interpreter, detached into its own session. */
export function execLaunch(python: string, script: string, spec: LaunchSpec): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [script, 'exec', JSON.stringify(spec)], { detached: true, stdio: 'ignore' });
    child.once('error', reject);
    child.once('spawn', () => {
      child.unref();
      resolve(child.pid!);
    });
  });
}
