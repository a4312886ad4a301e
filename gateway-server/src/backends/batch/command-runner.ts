// The one subprocess runner of the batch-system backends: a batch system is then a command builder
// plus an output parser. Commands get a prefix (a submit host over ssh, a test pool's chroot), an
// environment, a timeout, and fail with what the command said.
import { spawn } from 'node:child_process';

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

export interface CommandRunnerOptions {
  prefix: string[];
  env: Record<string, string>;
  timeoutMs: number;
}

export class CommandRunner {
  constructor(private readonly opts: CommandRunnerOptions) {}

  /** Runs `argv` (after the prefix) with extra environment; rejects with CommandError on failure. */
  run(argv: string[], extraEnv: Record<string, string> = {}, input?: string): Promise<CommandResult> {
    const words = [...this.opts.prefix, ...argv];
    const [cmd, ...args] = words;
    const name = argv[0] ?? cmd ?? '';
    return new Promise((resolve, reject) => {
      const child = spawn(cmd!, args, {
        env: { ...process.env, ...this.opts.env, ...extraEnv },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
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
      child.stdin.end(input ?? '');
    });
  }
}

function lastLines(text: string, n = 4): string {
  return text.trim().split('\n').slice(-n).join(' ').slice(0, 600) || 'no output';
}
