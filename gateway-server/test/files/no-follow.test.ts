import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, lstatSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
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
    await expect(readConfined(root, join(root, 'step', '.af', 'encrypt.key'))).rejects.toThrow(/outside/);
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
