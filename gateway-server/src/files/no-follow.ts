// File access in directories a user's job can write to (a run's or a cluster's directory): the job
// may plant a symbolic link, a FIFO or a hard link where the gateway expects its own file, and may
// swap a directory for a link while the gateway works (a race). So the gateway never resolves a
// path inside such a directory by name: it opens the trusted root and walks down one component at a
// time through descriptors, each opened with O_NOFOLLOW|O_DIRECTORY relative to the one before
// (/proc/self/fd/N/name is openat(N, name)), and creates, renames and removes entries relative to
// the descriptor of their directory. What a link or a swap can then do is make the call fail.
import { constants as fsc } from 'node:fs';
import { mkdir, open, readdir, rename, rm, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, isAbsolute, relative, resolve, sep } from 'node:path';

export class UnsafePathError extends Error {
  constructor(
    readonly path: string,
    why: string,
  ) {
    super(`refused to use ${path}: ${why}`);
    this.name = 'UnsafePathError';
  }
}

const DIR_FLAGS = fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW;
const code = (err: unknown) => (err as NodeJS.ErrnoException).code;
/** The entry `name` of the directory open as `dir`, by descriptor. */
const at = (dir: FileHandle, name: string) => `/proc/self/fd/${dir.fd}/${name}`;

/** The components of `path` below `root`, or an UnsafePathError when it is not below it. */
function componentsBelow(root: string, path: string): string[] {
  const rel = relative(resolve(root), resolve(path));
  if (rel.startsWith('..') || isAbsolute(rel)) throw new UnsafePathError(path, 'it lies outside its directory');
  return rel === '' ? [] : rel.split(sep);
}

function unsafe(path: string, err: unknown): Error {
  if (code(err) === 'ELOOP') return new UnsafePathError(path, 'a symbolic link is on its way');
  if (code(err) === 'ENOTDIR') return new UnsafePathError(path, 'something on its way is not a directory');
  return err as Error;
}

/**
 * Opens the directory `dir` (root itself or below it) through descriptors; with `create`, makes
 * the missing directories on the way. Null when it does not exist (and is not to be made).
 */
async function openDirBelow(root: string, dir: string, create = false): Promise<FileHandle | null> {
  const parts = componentsBelow(root, dir);
  let fh = await open(root, DIR_FLAGS); // the trusted root: its parent is the gateway's
  try {
    for (const part of parts) {
      let next: FileHandle;
      try {
        next = await open(at(fh, part), DIR_FLAGS);
      } catch (err) {
        if (code(err) !== 'ENOENT' || !create) {
          if (code(err) === 'ENOENT') {
            await fh.close();
            return null;
          }
          throw unsafe(dir, err);
        }
        await mkdir(at(fh, part)).catch((e: unknown) => {
          if (code(e) !== 'EEXIST') throw e;
        });
        next = await open(at(fh, part), DIR_FLAGS).catch((e: unknown) => {
          throw unsafe(dir, e);
        });
      }
      await fh.close();
      fh = next;
    }
    return fh;
  } catch (err) {
    await fh.close().catch(() => undefined);
    throw err;
  }
}

/**
 * Opens `file` (below `root`) for reading: a regular file with one link, reached without following
 * any link. Null when it (or its directory) does not exist.
 */
export async function openConfined(root: string, file: string): Promise<FileHandle | null> {
  const dir = await openDirBelow(root, dirname(file));
  if (!dir) return null;
  let fh: FileHandle;
  try {
    fh = await open(at(dir, basename(file)), fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (err) {
    if (code(err) === 'ENOENT') return null;
    if (code(err) === 'ELOOP') throw new UnsafePathError(file, 'it is a symbolic link');
    throw err;
  } finally {
    await dir.close();
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new UnsafePathError(file, 'it is not a regular file');
    // A hard link planted by the user would be the gateway's own file under another name.
    if (st.nlink > 1) throw new UnsafePathError(file, 'it has other names (a hard link)');
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
 * Replaces `file` (below `root`) with `text`: a fresh temporary file (O_EXCL|O_NOFOLLOW) in the
 * file's directory, renamed over the name, both by that directory's descriptor. A link planted at
 * the name is replaced, never written through; a swapped directory on the way makes it fail.
 */
export async function replaceConfined(root: string, file: string, text: string | Buffer, mode = 0o600): Promise<void> {
  const dir = await openDirBelow(root, dirname(file));
  if (!dir) throw new UnsafePathError(file, 'its directory does not exist');
  try {
    const tmp = at(dir, `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    const fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
    try {
      await fh.writeFile(text);
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, at(dir, basename(file)));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  } finally {
    await dir.close();
  }
}

/** Removes `file` (below `root`) if it is there; a link is removed itself, never what it points to. */
export async function removeConfined(root: string, file: string): Promise<void> {
  const dir = await openDirBelow(root, dirname(file));
  if (!dir) return;
  try {
    await unlink(at(dir, basename(file))).catch((err: unknown) => {
      if (code(err) !== 'ENOENT') throw err;
    });
  } finally {
    await dir.close();
  }
}

/**
 * Opens the directory `dir` (root itself or below it) without following any link on the way, for
 * callers that walk on from it by descriptor (at()); null when it does not exist. The caller closes it.
 */
export function openDirConfined(root: string, dir: string): Promise<FileHandle | null> {
  return openDirBelow(root, dir).catch((err: unknown) => {
    throw err instanceof UnsafePathError ? err : unsafe(dir, err);
  });
}

/** The path through which the entry `name` of the directory open as `dir` is reached (openat). */
export const entryAt = at;

/**
 * Whether the names `parts` lead from the directory open as `dir` to a directory or to a regular
 * file with one link, walked one component at a time without following any link (a FIFO is opened
 * without waiting for a writer, and is not a file). Each descriptor opened is taken from
 * `budget.opens`, for callers that look up many names (they check it before each).
 */
export async function existsBelow(dir: FileHandle, parts: string[], budget: { opens: number }): Promise<boolean> {
  if (parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('/') || p.includes('\0'))) return false;
  let fh: FileHandle | null = null; // what the walk opened last (dir is the caller's)
  try {
    for (const [i, part] of parts.entries()) {
      budget.opens--;
      const flags = i === parts.length - 1 ? fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK | fsc.O_NOCTTY : DIR_FLAGS;
      const next: FileHandle | null = await open(at(fh ?? dir, part), flags).catch(() => null);
      const done = fh;
      fh = next;
      await done?.close();
      if (!fh) return false;
    }
    if (!fh) return true;
    const st = await fh.stat();
    return st.isDirectory() || (st.isFile() && st.nlink === 1);
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** Makes `dir` (below `root`, parents too) without making anything through a link. */
export async function mkdirConfined(root: string, dir: string): Promise<void> {
  const fh = await openDirBelow(root, dir, true);
  await fh?.close();
}

const TREE_DIR_FLAGS = DIR_FLAGS | fsc.O_NONBLOCK;
const MAX_DEPTH = 64;

/** Empties the directory open as `dir`, reached only through its descriptor (never by a path a user can swap). */
async function emptyOpenDir(dir: FileHandle, depth: number): Promise<void> {
  const base = `/proc/self/fd/${dir.fd}`;
  for (const name of await readdir(base)) {
    const p = `${base}/${name}`;
    let sub: FileHandle;
    try {
      sub = await open(p, TREE_DIR_FLAGS);
    } catch (err) {
      if (code(err) === 'ENOENT') continue;
      if (code(err) !== 'ENOTDIR' && code(err) !== 'ELOOP') throw err;
      await unlink(p).catch((e: unknown) => {
        if (code(e) !== 'ENOENT') throw e;
      }); // a link or file: only the name goes
      continue;
    }
    try {
      if (depth < MAX_DEPTH) await emptyOpenDir(sub, depth + 1);
    } finally {
      await sub.close();
    }
    await rmdir(p).catch((e: unknown) => {
      if (code(e) !== 'ENOENT' && code(e) !== 'ENOTEMPTY') throw e;
    });
  }
}

/**
 * Removes a directory tree a user's jobs could write to, as the gateway, without ever following a
 * link, even one planted while it runs: every directory is entered through a descriptor opened with
 * O_NOFOLLOW and its entries are removed relative to that descriptor (/proc/self/fd/N/name). The
 * directory's own parent must be the gateway's.
 */
export async function removeTree(dir: string): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(dir, TREE_DIR_FLAGS);
  } catch (err) {
    if (code(err) === 'ENOENT') return;
    if (code(err) === 'ENOTDIR' || code(err) === 'ELOOP') return unlink(dir);
    throw err;
  }
  try {
    await emptyOpenDir(fh, 0);
  } finally {
    await fh.close();
  }
  await rmdir(dir).catch((e: unknown) => {
    if (code(e) !== 'ENOENT') throw e;
  });
}
