// The batch backends' subprocess runner refuses to hold unbounded output: a queue any user can
// fill must not fill the gateway's memory.
import { describe, expect, it } from 'vitest';
import { CommandError, CommandRunner } from '../../src/backends/batch/command-runner.js';

const runner = (maxOutput?: number) => new CommandRunner({ prefix: [], env: {}, timeoutMs: 20_000, maxOutput });

describe('CommandRunner output limit', () => {
  it('stops a command that prints more than the limit and fails it with a message saying so', async () => {
    const started = Date.now();
    const err = await runner(64 * 1024)
      .run(['yes', 'a job ad line'])
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(CommandError);
    expect((err as Error).message).toBe('yes printed more than 65536 characters and was stopped');
    expect(Date.now() - started).toBeLessThan(15_000); // killed, not waited out to the timeout
  });

  it('returns output within the limit unchanged', async () => {
    const out = await runner(64 * 1024).run(['sh', '-c', 'printf "%s" "$(head -c 60000 /dev/zero | tr "\\0" x)"']);
    expect(out.stdout).toBe('x'.repeat(60000));
  });
});
