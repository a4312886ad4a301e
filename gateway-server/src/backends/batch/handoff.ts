// Handing files the gateway wrote to the account a batch job runs as, without ever acting through a
// path that account controls. The rules:
//   - the gateway changes ownership only of entries inside directories that no user can write to
//     (its own, checked on every component from a trusted base down), with lchown: never through a
//     link, and skipping links, devices, FIFOs and sockets;
//   - a tree is handed over bottom-up (each directory after its contents), so nothing the gateway
//     still has to touch is ever the user's;
//   - a directory that is already the user's is never walked again (a retry finds it as it is);
//   - what the gateway reads back from the user (log tails) is opened with O_NOFOLLOW and must be a
//     regular file of that user.
import { constants, type Stats } from 'node:fs';
import { chmod, lchown, lstat, mkdir, open, readdir } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { describeLogTail } from '../../files/log-tail.js';

export interface FileOwner {
  uid: number;
  gid: number;
}

/** The gateway's own uid (the owner of everything it writes). */
export const gatewayUid = (): number => process.getuid?.() ?? -1;

const writableByOthers = (s: Stats) => (s.mode & 0o022) !== 0;

async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * Every directory strictly below `base` down to `dir` (inclusive) is a real directory (not a link)
 * owned by the gateway and writable by no one else: nothing on the way can be swapped by a user.
 */
export async function assertGatewayPath(base: string, dir: string, uid = gatewayUid()): Promise<void> {
  const rel = relative(resolve(base), resolve(dir));
  if (rel === '') return;
  if (rel.startsWith('..') || rel.startsWith(sep)) throw new Error(`${dir} is not below ${base}`);
  let p = resolve(base);
  for (const part of rel.split(sep)) {
    p = join(p, part);
    const s = await lstat(p);
    if (!s.isDirectory()) throw new Error(`refusing ${dir}: ${p} is not a directory (a link?)`);
    if (s.uid !== uid) throw new Error(`refusing ${dir}: ${p} belongs to uid ${s.uid}, not to the gateway`);
    if (writableByOthers(s)) throw new Error(`refusing ${dir}: others may write to ${p}`);
  }
}

export type HandoffResult = 'handed' | 'already';

/**
 * Hands a directory tree the gateway built to `owner`: files and directories lchown'ed bottom-up,
 * the top directory chmod'ed to `mode` and handed last (a setgid bit in `mode` goes to every
 * directory: what the gateway creates in them later gets the owner's group). Links and special files are left as they
 * are; entries that are not the gateway's are neither changed nor entered. A directory that is
 * already the owner's is not walked (a job of theirs may have planted anything in it). The caller
 * has checked the parents with assertGatewayPath.
 */
export async function handTreeTo(dir: string, owner: FileOwner, mode: number, uid = gatewayUid()): Promise<HandoffResult> {
  const top = await lstat(dir);
  if (!top.isDirectory()) throw new Error(`refusing to hand over ${dir}: not a directory (a link?)`);
  if (top.uid === owner.uid) return 'already';
  if (top.uid !== uid) throw new Error(`refusing to hand over ${dir}: it belongs to uid ${top.uid}`);
  const walk = async (d: string): Promise<void> => {
    for (const name of await readdir(d)) {
      const p = join(d, name);
      const s = await lstat(p);
      if (s.uid !== uid) continue; // not the gateway's: not ours to give, and not entered
      if (s.isDirectory()) {
        await walk(p);
        await chmod(p, (s.mode & 0o777) | (mode & 0o2000)); // its parent is the gateway's: still this directory
        await lchown(p, owner.uid, owner.gid);
      } else if (s.isFile() && s.nlink === 1) {
        await lchown(p, owner.uid, owner.gid);
      }
      // links, hard-linked files, FIFOs, sockets, devices: left alone
    }
  };
  await walk(dir);
  await chmod(dir, mode); // its parent is the gateway's: the entry cannot have become a link
  await lchown(dir, owner.uid, owner.gid);
  return 'handed';
}

/**
 * A file the gateway wrote in a directory of its own, given to `owner` (mode 0600). Missing files
 * are skipped; a link, a special file or a file of someone else is refused.
 */
export async function handFileTo(file: string, owner: FileOwner, uid = gatewayUid()): Promise<void> {
  const s = await lstatOrNull(file);
  if (!s) return;
  if (!s.isFile() || s.nlink !== 1) throw new Error(`refusing to hand over ${file}: not a plain file`);
  if (s.uid === owner.uid && s.gid === owner.gid && (s.mode & 0o777) === 0o600) return;
  if (s.uid !== uid && s.uid !== owner.uid) throw new Error(`refusing to hand over ${file}: it belongs to uid ${s.uid}`);
  await chmod(file, 0o600); // the directory is the gateway's: the entry is still the file just checked
  await lchown(file, owner.uid, owner.gid);
}

/**
 * A directory for `owner` inside a directory of the gateway's: made (mode 0700) when missing and
 * handed over; an existing one must be a real directory of the owner's (or the gateway's, then it
 * is handed over).
 */
export async function ownedSubdir(dir: string, owner: FileOwner, uid = gatewayUid()): Promise<void> {
  let s = await lstatOrNull(dir);
  if (!s) {
    await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    s = await lstat(dir);
  }
  if (!s.isDirectory()) throw new Error(`refusing ${dir}: not a directory (a link?)`);
  if (s.uid === owner.uid) return;
  if (s.uid !== uid) throw new Error(`refusing ${dir}: it belongs to uid ${s.uid}`);
  await chmod(dir, 0o700);
  await lchown(dir, owner.uid, owner.gid);
}

/**
 * Lets the jobs' accounts pass through a directory of the gateway's (adds o+x, nothing else). Before
 * the gateway's data directory opens like that, the plain files in it (the state database and its
 * journals, the key) are closed to group and others, so no name a job could guess opens them.
 */
export async function makeTraversable(dir: string, uid = gatewayUid()): Promise<void> {
  const s = await lstat(dir);
  if (!s.isDirectory()) throw new Error(`refusing ${dir}: not a directory (a link?)`);
  if (s.uid !== uid) return; // the admin's directory: its permissions are the admin's choice
  for (const name of await readdir(dir)) {
    const e = await lstat(join(dir, name)).catch(() => null);
    if (e?.isFile() && e.uid === uid && (e.mode & 0o077) !== 0) await chmod(join(dir, name), e.mode & 0o7700);
  }
  if ((s.mode & 0o011) !== 0o011) await chmod(dir, (s.mode & 0o7777) | 0o011);
}

const TAIL_BYTES = 64 * 1024;

/**
 * The last lines of a log a job of `uid` wrote, read without following a link and only if it is a
 * regular file of that account (so a job cannot make the gateway show it another file).
 */
export async function userLogTail(file: string, uid: number, lines = 6): Promise<string> {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ELOOP' ? 'its log is a link (not read)' : 'no log was written';
  }
  try {
    const s = await handle.stat();
    if (!s.isFile()) return 'its log is not a regular file (not read)';
    if (s.uid !== uid) return `its log belongs to uid ${s.uid}, not to the job's account (not read)`;
    const length = Math.min(s.size, TAIL_BYTES);
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, s.size - length);
    return describeLogTail(buf.toString('utf8'), lines);
  } finally {
    await handle.close();
  }
}

// (removeTree, the descriptor-walking removal, lives with the other no-follow helpers)
export { removeTree } from '../../files/no-follow.js';
