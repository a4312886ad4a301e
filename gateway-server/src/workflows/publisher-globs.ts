// Publisher globs (fromglob-pub's globexpression, interpolated-pub with glob: true) match files in
// the step's own directory, which the step's user writes. The gateway lists it as itself, so a glob
// must neither name a place outside it (`..`, an absolute path elsewhere: 422 at submission when the
// pattern says so by itself, a failed step when its parameters do) nor follow a link the step
// planted (`out -> /etc`). Matching therefore walks directories by descriptor from the run's
// workspace (files/no-follow.ts), entering each with O_NOFOLLOW, and never reads what a link names.
import { constants as fsc, type Dirent } from 'node:fs';
import { lstat, open, readdir, type FileHandle } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import picomatch from 'picomatch';
import { entryAt, openDirConfined, UnsafePathError } from '../files/no-follow.js';
import type { WorkflowProblem } from './workflow-loader.js';

export class GlobError extends Error {}

/** Directory entries a glob may look at, files it may return, directories deep it may go. */
const MAX_ENTRIES = 100_000;
const MAX_MATCHES = 20_000;
const MAX_DEPTH = 32;

const MAGIC = /[*?[{]/;

/**
 * One path segment of a glob (picomatch's syntax: * ? [class] {a,b}) as a regular expression; as in
 * the shell, a leading dot is matched only by a pattern's own dot.
 */
function segmentRegExp(seg: string): RegExp {
  return picomatch.makeRe(seg, { dot: seg.startsWith('.'), noextglob: true, nonegate: true });
}

/**
 * The pattern relative to the step's directory, or why it leaves it. `pattern` is what the publisher
 * made of its template (yadage's examples write `{workdir}/*.root`, so the directory itself may lead).
 */
export function confinePattern(pattern: string, workdir: string): string {
  if (pattern.includes('\0')) throw new GlobError(`the glob ${JSON.stringify(pattern)} holds a NUL character`);
  let rel = pattern;
  if (isAbsolute(pattern)) {
    if (pattern !== workdir && !pattern.startsWith(workdir + '/')) {
      throw new GlobError(`the glob ${pattern} is outside the step's directory ${workdir}; a publisher matches the step's own files`);
    }
    rel = pattern.slice(workdir.length + 1);
  }
  if (rel.split('/').includes('..')) throw new GlobError(`the glob ${pattern} climbs out of the step's directory with ..; a publisher matches the step's own files`);
  return rel;
}

/**
 * Files under `workdir` (inside the trusted `root`) matching a pattern relative to it, as absolute
 * paths, sorted. Links are not followed: one the pattern names, or one that would match, fails it.
 */
export async function globConfined(root: string, workdir: string, pattern: string): Promise<string[]> {
  const segs = pattern.split('/').filter((s) => s !== '' && s !== '.');
  if (!segs.length) return [];
  const compiled = segs.map((s) => (s === '**' ? ('**' as const) : MAGIC.test(s) ? segmentRegExp(s) : s));
  let top: FileHandle | null;
  try {
    top = await openDirConfined(root, workdir);
  } catch (err) {
    if (err instanceof UnsafePathError) throw new GlobError(`the step's directory cannot be searched: ${err.message}`);
    throw err;
  }
  if (!top) return [];
  const found = new Set<string>();
  let seen = 0;
  const shown = (rel: string[]) => rel.join('/');

  const list = async (dir: FileHandle): Promise<Dirent[]> => {
    const entries = await readdir(`/proc/self/fd/${dir.fd}`, { withFileTypes: true });
    if ((seen += entries.length) > MAX_ENTRIES) throw new GlobError(`the glob ${pattern} looked at more than ${MAX_ENTRIES.toLocaleString('en')} entries of the step's directory`);
    return entries;
  };
  /** Whether an entry is a link, a directory or a regular file, without following it. */
  const kind = async (dir: FileHandle, e: Dirent): Promise<'link' | 'dir' | 'file' | 'other'> => {
    if (e.isSymbolicLink()) return 'link';
    if (e.isDirectory()) return 'dir';
    if (e.isFile()) return 'file';
    if (!e.isBlockDevice() && !e.isCharacterDevice() && !e.isFIFO() && !e.isSocket()) {
      const st = await lstat(entryAt(dir, e.name)).catch(() => null); // a filesystem without d_type
      return !st ? 'other' : st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
    }
    return 'other';
  };
  const enter = async (dir: FileHandle, name: string, rel: string[]): Promise<FileHandle | null> => {
    try {
      return await open(entryAt(dir, name), fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null; // gone or swapped for a file meanwhile
      if (code === 'ELOOP') throw new GlobError(`${shown(rel)} in the step's directory is a symbolic link; a publisher does not follow links`);
      throw err;
    }
  };
  const linkMet = (rel: string[]) =>
    new GlobError(`the glob ${pattern} meets ${shown(rel)}, a symbolic link in the step's directory; a publisher does not follow links (publish the files themselves)`);

  const walk = async (dir: FileHandle, rel: string[], i: number): Promise<void> => {
    const seg = compiled[i]!;
    const last = i === compiled.length - 1;
    if (seg === '**') {
      if (last) return walkAll(dir, rel, 0); // `dir/**`: every file below
      await walk(dir, rel, i + 1);
      if (rel.length >= MAX_DEPTH) return;
      for (const e of await list(dir)) {
        if (e.name.startsWith('.') || (await kind(dir, e)) !== 'dir') continue; // links are not entered
        const sub = await enter(dir, e.name, [...rel, e.name]);
        if (!sub) continue;
        try {
          await walk(sub, [...rel, e.name], i);
        } finally {
          await sub.close();
        }
      }
      return;
    }
    const named = typeof seg === 'string';
    const entries = named ? (await list(dir)).filter((e) => e.name === seg) : (await list(dir)).filter((e) => seg.test(e.name));
    for (const e of entries) {
      const path = [...rel, e.name];
      const k = await kind(dir, e);
      if (k === 'link') {
        if (named || last) throw linkMet(path);
        continue; // a wildcard does not enter links
      }
      if (last) {
        if (k === 'file') add(path);
        continue;
      }
      if (k !== 'dir' || path.length > MAX_DEPTH) continue;
      const sub = await enter(dir, e.name, path);
      if (!sub) continue;
      try {
        await walk(sub, path, i + 1);
      } finally {
        await sub.close();
      }
    }
  };
  const walkAll = async (dir: FileHandle, rel: string[], depth: number): Promise<void> => {
    for (const e of await list(dir)) {
      if (e.name.startsWith('.')) continue;
      const k = await kind(dir, e);
      if (k === 'file') add([...rel, e.name]);
      else if (k === 'dir' && depth < MAX_DEPTH) {
        const sub = await enter(dir, e.name, [...rel, e.name]);
        if (!sub) continue;
        try {
          await walkAll(sub, [...rel, e.name], depth + 1);
        } finally {
          await sub.close();
        }
      }
    }
  };
  const add = (rel: string[]) => {
    found.add(join(workdir, ...rel));
    if (found.size > MAX_MATCHES) throw new GlobError(`the glob ${pattern} matches more than ${MAX_MATCHES.toLocaleString('en')} files`);
  };

  try {
    await walk(top, [], 0);
  } finally {
    await top.close();
  }
  return [...found].sort();
}

/**
 * What a publisher's glob template says by itself about where it points: its literal text, with
 * `{workdir}` standing for the step's directory and every other parameter unknown (checked when
 * the step ran). Problems at submission.
 */
export function staticGlobProblems(template: string, path: string, file: string | undefined): WorkflowProblem[] {
  const WORKDIR = '\u0002';
  const UNKNOWN = '\u0001';
  const probe = template.replace(/\{\{|\}\}|\{[^{}]*\}/g, (m) => (m === '{{' ? '{' : m === '}}' ? '}' : m.slice(1, -1).trim() === 'workdir' ? WORKDIR : UNKNOWN));
  let rel = probe;
  if (probe.startsWith(WORKDIR)) rel = probe.slice(1).replace(/^\//, '');
  else if (isAbsolute(probe)) {
    return [{ path, file, message: `the glob ${template} is an absolute path; a publisher matches files in the step's directory (write a relative pattern or {workdir}/…)` }];
  }
  if (rel.split('/').includes('..')) return [{ path, file, message: `the glob ${template} climbs out of the step's directory with ..; a publisher matches files in the step's directory` }];
  return [];
}
