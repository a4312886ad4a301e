import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync, lstatSync, existsSync, linkSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdirConfined, readConfined, removeConfined, replaceConfined, UnsafePathError } from '../../src/files/no-follow.js';

// A run's directory that a step (the "user") has written to, next to a file of the gateway's.
let base: string;
let root: string;
let secret: string;
beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), 'af-nofollow-'));
  root = join(base, 'run');
  mkdirSync(join(root, 'step', '.af'), { recursive: true });
  secret = join(base, 'encrypt.key');
  writeFileSync(secret, 'GATEWAY-SECRET\n');
});
afterEach(() => rmSync(base, { recursive: true, force: true }));

describe('confined file access', () => {
  it('reads a regular file of the directory, and nothing through a planted link', async () => {
    writeFileSync(join(root, 'step', '.af', 'exit-code'), '0\n');
    expect(await readConfined(root, join(root, 'step', '.af', 'exit-code'))).toBe('0\n');
    expect(await readConfined(root, join(root, 'step', '.af', 'missing'))).toBeNull();
    symlinkSync(secret, join(root, 'step', '.af', 'log'));
    await expect(readConfined(root, join(root, 'step', '.af', 'log'))).rejects.toThrow(UnsafePathError);
    // a directory on the way replaced by a link to the gateway's directory
    rmSync(join(root, 'step', '.af'), { recursive: true });
    symlinkSync(base, join(root, 'step', '.af'));
    await expect(readConfined(root, join(root, 'step', '.af', 'encrypt.key'))).rejects.toThrow(UnsafePathError);
  });

  it('refuses a hard link to a file of the gateway (where the kernel allows one)', async () => {
    linkSync(secret, join(root, 'step', '.af', 'log'));
    await expect(readConfined(root, join(root, 'step', '.af', 'log'))).rejects.toThrow(/hard link/);
  });

  it('writes nothing outside while the step swaps its directory for a link, again and again', async () => {
    // What a hostile step does during a retry: exchange .af and a link to the gateway's directory
    // (renameat2 RENAME_EXCHANGE) as fast as it can, while the gateway writes the step's files.
    const target = join(base, 'gateway-dir');
    mkdirSync(target);
    writeFileSync(join(target, 'exit-code'), 'keep\n');
    const af = join(root, 'step', '.af');
    const link = join(root, 'step', 'lnk');
    symlinkSync(target, link);
    const swapper = spawn(
      'python3',
      [
        '-c',
        [
          'import ctypes, sys, time',
          'libc = ctypes.CDLL(None, use_errno=True)',
          'a, b = sys.argv[1].encode(), sys.argv[2].encode()',
          'end = time.time() + 4',
          'while time.time() < end:',
          '    libc.renameat2(-100, a, -100, b, 2)',
        ].join('\n'),
        af,
        link,
      ],
      { stdio: 'ignore' },
    );
    try {
      const until = Date.now() + 2500;
      let tries = 0;
      while (Date.now() < until) {
        tries++;
        await replaceConfined(root, join(af, 'command'), 'echo owned\n').catch(() => undefined);
        await removeConfined(root, join(af, 'exit-code')).catch(() => undefined);
        await mkdirConfined(root, join(af, 'made')).catch(() => undefined);
      }
      expect(tries).toBeGreaterThan(50);
    } finally {
      swapper.kill('SIGKILL');
    }
    expect(readdirSync(target).sort()).toEqual(['exit-code']);
    expect(readFileSync(join(target, 'exit-code'), 'utf8')).toBe('keep\n');
  });

  it('does not hang on a FIFO planted where a log should be', async () => {
    execFileSync('mkfifo', [join(root, 'step', '.af', 'log')]);
    await expect(readConfined(root, join(root, 'step', '.af', 'log'))).rejects.toThrow(/not a regular file/);
  });

  it('replaces a planted link instead of writing through it', async () => {
    const command = join(root, 'step', '.af', 'command');
    symlinkSync(secret, command);
    await replaceConfined(root, command, 'echo retry\n');
    expect(readFileSync(secret, 'utf8')).toBe('GATEWAY-SECRET\n');
    expect(lstatSync(command).isSymbolicLink()).toBe(false);
    expect(readFileSync(command, 'utf8')).toBe('echo retry\n');
  });

  it('writes, removes and makes nothing outside through a directory link', async () => {
    rmSync(join(root, 'step', '.af'), { recursive: true });
    symlinkSync(base, join(root, 'step', '.af'));
    await expect(replaceConfined(root, join(root, 'step', '.af', 'encrypt.key'), 'x')).rejects.toThrow(UnsafePathError);
    await expect(removeConfined(root, join(root, 'step', '.af', 'encrypt.key'))).rejects.toThrow(UnsafePathError);
    await expect(mkdirConfined(root, join(root, 'step', '.af', 'made', 'here'))).rejects.toThrow(UnsafePathError);
    expect(readFileSync(secret, 'utf8')).toBe('GATEWAY-SECRET\n');
    expect(existsSync(join(base, 'made'))).toBe(false);
  });
});
