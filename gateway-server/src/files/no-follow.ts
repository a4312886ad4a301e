// File access in directories a user's job can write to (a cluster's or a step's directory on a
// batch backend): the job may have planted a symbolic link, a FIFO or a directory where the gateway
// expects its own file. These helpers never follow a link at the last component, never block on a
// FIFO, and confirm that what they opened lies inside the directory they were given.
import { constants as fsc } from 'node:fs';
import { mkdir, open, realpath, rename, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join, relative, isAbsolute, basename } from 'node:path';

export class UnsafePathError extends Error {
  constructor(readonly path: string, why: string) {
    super(`refused to use ${path}: ${why}`);
    this.name = 'UnsafePathError';
  }
}

function inside(root: string, p: string): boolean {
  const rel = relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * Opens `file` (below `root`) for reading: a regular file reached without symbolic links leaving
 * `root`, the last component not a link. Returns null when it does not exist.
 */
export async function openConfined(root: string, file: string): Promise<import('node:fs/promises').FileHandle | null> {
  let fh;
  try {
    fh = await open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    if (code === 'ELOOP') throw new UnsafePathError(file, 'it is a symbolic link');
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new UnsafePathError(file, 'it is not a regular file');
    // The directories on the way may have been links: where the file really is must be inside root.
    const [realRoot, real] = await Promise.all([realpath(root), realpath(file)]);
    if (!inside(realRoot, real)) throw new UnsafePathError(file, 'it lies outside its directory');
    const again = await stat(real);
    if (again.ino !== st.ino || again.dev !== st.dev) throw new UnsafePathError(file, 'it changed while it was opened');
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** Reads a confined file whole (at most maxBytes, from the end when longer); null when missing. */
export async function readConfined(root: string, file: string, maxBytes = 1 << 20): Promise<string | null> {
  const fh = await openConfined(root, file);
  if (!fh) return null;
  try {
    const { size } = await fh.stat();
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, size - length);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

/**
 * Replaces `file` (below `root`) with `text`: written to a fresh temporary file (O_EXCL|O_NOFOLLOW)
 * and renamed over the name, so a link planted at the name is replaced, never written through.
 */
export async function replaceConfined(root: string, file: string, text: string | Buffer, mode = 0o600): Promise<void> {
  const dir = dirname(file);
  const [realRoot, realDir] = await Promise.all([realpath(root), realpath(dir)]);
  if (!inside(realRoot, realDir)) throw new UnsafePathError(file, 'its directory lies outside');
  const tmp = join(realDir, `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
  try {
    await fh.writeFile(text);
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, join(realDir, basename(file)));
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Removes `file` (below `root`) if it is there; a link is removed itself, never what it points to. */
export async function removeConfined(root: string, file: string): Promise<void> {
  const [realRoot, realDir] = await Promise.all([realpath(root), realpath(dirname(file)).catch(() => null)]);
  if (realDir === null) return; // no directory, no file
  if (!inside(realRoot, realDir)) throw new UnsafePathError(file, 'its directory lies outside');
  await rm(join(realDir, basename(file)), { force: true });
}

/** Makes `dir` (below `root`, parents too) and confirms it did not end up outside through a link. */
export async function mkdirConfined(root: string, dir: string): Promise<void> {
  const realRoot = await realpath(root);
  // The nearest existing ancestor first: no directory is made through a link that leaves root.
  let existing = dir;
  for (;;) {
    const real = await realpath(existing).catch(() => null);
    if (real !== null) {
      if (!inside(realRoot, real)) throw new UnsafePathError(dir, 'it lies outside its directory');
      break;
    }
    if (dirname(existing) === existing) break;
    existing = dirname(existing);
  }
  await mkdir(dir, { recursive: true });
  if (!inside(realRoot, await realpath(dir))) throw new UnsafePathError(dir, 'it lies outside its directory');
}
