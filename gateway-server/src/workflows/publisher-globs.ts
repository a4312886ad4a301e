// Publisher globs (fromglob-pub's globexpression, interpolated-pub with glob: true) match files in
// the step's own directory, which the step's user writes. The gateway lists it as itself, so a glob
// must neither name a place outside it (`..`, an absolute path elsewhere: 422 at submission when the
// pattern says so by itself, a failed step when its parameters do) nor follow a link the step
// planted (`out -> /etc`). Matching therefore walks directories by descriptor from the run's
// workspace (files/no-follow.ts), entering each with O_NOFOLLOW, and never reads what a link names.
import { constants as fsc, type Dirent } from 'node:fs';
import { lstat, open, readdir, type FileHandle } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { entryAt, openDirConfined, UnsafePathError } from '../files/no-follow.js';
import type { WorkflowProblem } from './workflow-loader.js';

export class GlobError extends Error {}

/** The pattern itself is beyond what a glob may be (too many alternatives, too long, too costly to match), whatever the files. */
export class GlobPatternError extends GlobError {}

/**
 * What several globs may spend together (the patterns of one stage's inits, run-data.ts): match
 * steps and directory entries. Each glob still has its own bounds; this one is shared and spent.
 */
export interface GlobBudget {
  steps: number;
  entries: number;
}

/** The shared budget of several globs ran out at `pattern`: no single pattern is at fault, their number is. */
export class GlobBudgetError extends GlobError {
  constructor(
    readonly pattern: string,
    readonly spent: keyof GlobBudget,
  ) {
    super(`the glob ${pattern} went past the ${spent === 'steps' ? 'match steps' : 'directory entries'} it shares with other globs`);
  }
}

/** Directory entries a glob may look at, files it may return, directories deep it may go. */
const MAX_ENTRIES = 100_000;
const MAX_MATCHES = 20_000;
const MAX_DEPTH = 32;

const MAGIC = /[*?[{]/;

/** Brace alternatives a segment may expand to, tokens an alternative may have, match steps a glob may take. */
const MAX_ALTERNATIVES = 256;
const MAX_TOKENS = 512;
const MAX_STEPS = 20_000_000;

/** A token of a segment: any run of characters (a star), or a test of one character. */
type Token = '*' | ((c: string) => boolean);

/** The top-level comma-separated parts of a brace's body. */
function braceParts(body: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === '\\') i++;
    else if (c === '{') depth++;
    else if (c === '}') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(body.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(body.slice(start));
  return parts;
}

/** {1..3} or {a..e}, as the shell expands it; null for anything else. */
function braceRange(body: string): string[] | null {
  const num = /^(-?\d{1,9})\.\.(-?\d{1,9})$/.exec(body);
  const chr = /^([A-Za-z])\.\.([A-Za-z])$/.exec(body);
  if (!num && !chr) return null;
  const [a, b] = num ? [Number(num[1]), Number(num[2])] : [chr![1]!.charCodeAt(0), chr![2]!.charCodeAt(0)];
  if (Math.abs(b - a) >= MAX_ALTERNATIVES) throw new GlobPatternError(`the brace {${body}} makes more than ${MAX_ALTERNATIVES} alternatives`);
  const out: string[] = [];
  for (let i = a; a <= b ? i <= b : i >= b; i += a <= b ? 1 : -1) out.push(num ? String(i) : String.fromCharCode(i));
  return out;
}

/** A segment with its braces expanded ({a,b}, nested, {1..3}); a brace with neither stays literal. */
function expandBraces(seg: string): string[] {
  let depth = 0;
  let open = -1;
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i];
    if (c === '\\') i++;
    else if (c === '{' && depth++ === 0) open = i;
    else if (c === '}' && depth > 0 && --depth === 0) {
      const body = seg.slice(open + 1, i);
      const parts = braceParts(body);
      const alternatives = parts.length > 1 ? parts : braceRange(body);
      if (!alternatives) continue;
      const out: string[] = [];
      const rest = expandBraces(seg.slice(i + 1));
      for (const alt of alternatives) {
        for (const head of expandBraces(seg.slice(0, open) + alt)) {
          for (const tail of rest) {
            if (out.push(head + tail) > MAX_ALTERNATIVES)
              throw new GlobPatternError(`the glob segment ${seg} makes more than ${MAX_ALTERNATIVES} alternatives with its braces`);
          }
        }
      }
      return out;
    }
  }
  return [seg];
}

const POSIX_CLASSES: Record<string, string> = {
  alpha: 'a-zA-Z',
  digit: '0-9',
  alnum: 'a-zA-Z0-9',
  upper: 'A-Z',
  lower: 'a-z',
  space: '\\s',
  xdigit: '0-9a-fA-F',
  word: '\\w',
  punct: '!-\\/:-@\\[-`{-~',
  blank: ' \\t',
};

/** One alternative (braces expanded) as tokens: * ? [class] and literal characters (\\ escapes one). */
function tokens(alt: string): Token[] {
  const out: Token[] = [];
  const chars = [...alt];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '*') {
      if (out[out.length - 1] !== '*') out.push('*');
    } else if (c === '?') out.push(() => true);
    else if (c === '[') {
      // the class ends at the first ] after its first character (so []] and [!]] hold a ])
      let j = i + 1;
      if (chars[j] === '!' || chars[j] === '^') j++;
      if (chars[j] === ']') j++;
      while (j < chars.length && chars[j] !== ']') {
        const posix = chars[j] === '[' && chars[j + 1] === ':' ? chars.indexOf(']', j + 2) : -1; // [:digit:] inside
        j = posix > 0 && chars[posix - 1] === ':' ? posix + 1 : j + (chars[j] === '\\' ? 2 : 1);
      }
      let re: RegExp | null = null;
      if (j < chars.length) {
        let body = chars.slice(i + 1, j).join('');
        if (body.startsWith('!')) body = '^' + body.slice(1);
        body = body.replace(/\[:([a-z]+):\]/g, (m, name: string) => POSIX_CLASSES[name] ?? m).replace(/^(\^?)\]/, '$1\\]');
        try {
          re = new RegExp(`^[${body}]$`, 'u');
        } catch {
          re = null;
        }
      }
      if (re) {
        const one = re;
        out.push((ch) => one.test(ch));
        i = j;
      } else out.push((ch) => ch === '[');
    } else {
      const lit = c === '\\' && i + 1 < chars.length ? chars[++i]! : c;
      out.push((ch) => ch === lit);
    }
    if (out.length > MAX_TOKENS) throw new GlobPatternError(`a segment of the glob is longer than ${MAX_TOKENS} characters`);
  }
  return out;
}

/**
 * One path segment of a glob (* ? [class] {a,b} {1..3}, \\ escaping) as a test of a name, in time
 * linear in name and pattern: a star only ever resumes from the last one (a backtracking regular
 * expression took seconds to hours for '*a*a*a*a*a*a*a*b' against a long name, on the event loop).
 * As in the shell, a leading dot is matched only by a pattern's own dot. `budget` bounds the steps
 * of all tests of one glob.
 */
function segmentMatcher(seg: string, budget: { steps: number }): (name: string) => boolean {
  const alternatives = expandBraces(seg).map(tokens);
  const dot = seg.startsWith('.');
  const match = (toks: Token[], name: string[]): boolean => {
    let t = 0;
    let c = 0;
    let star = -1;
    let resume = 0;
    while (c < name.length) {
      if (--budget.steps < 0) throw new GlobPatternError(`the glob segment ${seg} takes too long to match the step's files; write a simpler pattern`);
      const tok = toks[t];
      if (tok === '*') {
        star = t++;
        resume = c;
      } else if (tok && tok(name[c]!)) {
        t++;
        c++;
      } else if (star >= 0) {
        t = star + 1;
        c = ++resume;
      } else return false;
    }
    while (toks[t] === '*') t++;
    return t === toks.length;
  };
  return (name) => {
    if (name.startsWith('.') && !dot) return false;
    const chars = [...name];
    return alternatives.some((toks) => match(toks, chars));
  };
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
  if (rel.split('/').includes('..'))
    throw new GlobError(`the glob ${pattern} climbs out of the step's directory with ..; a publisher matches the step's own files`);
  return rel;
}

/**
 * Files under `workdir` (inside the trusted `root`) matching a pattern relative to it, as absolute
 * paths, sorted. Links are not followed: one the pattern names, or one that would match, fails it.
 * With `shared`, the glob spends from that budget too, and fails with a GlobBudgetError when it is
 * the shared budget that runs out.
 */
export async function globConfined(root: string, workdir: string, pattern: string, shared?: GlobBudget): Promise<string[]> {
  const segs = pattern.split('/').filter((s) => s !== '' && s !== '.');
  if (!segs.length) return [];
  // Each glob alone may take MAX_STEPS and MAX_ENTRIES; many globs sharing one budget (a stage's
  // inits may match 1,000 patterns) take no more than it together: mallory's 1,000 patterns each
  // costing 20M steps held the event loop 200 s for one submission, and 1,000 patterns over a
  // directory her step filled with 99,000 files listed it 1,000 times.
  const stepCap = Math.max(0, Math.min(MAX_STEPS, shared?.steps ?? MAX_STEPS));
  const entryCap = Math.max(0, Math.min(MAX_ENTRIES, shared?.entries ?? MAX_ENTRIES));
  const budget = { steps: stepCap };
  const compiled = segs.map((s) => (s === '**' ? ('**' as const) : MAGIC.test(s) ? segmentMatcher(s, budget) : s));
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
    if ((seen += entries.length) > entryCap) {
      if (entryCap < MAX_ENTRIES) throw new GlobBudgetError(pattern, 'entries');
      throw new GlobError(`the glob ${pattern} looked at more than ${MAX_ENTRIES.toLocaleString('en')} entries of the step's directory`);
    }
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
    new GlobError(
      `the glob ${pattern} meets ${shown(rel)}, a symbolic link in the step's directory; a publisher does not follow links (publish the files themselves)`,
    );

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
    const entries = named ? (await list(dir)).filter((e) => e.name === seg) : (await list(dir)).filter((e) => seg(e.name));
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
  } catch (err) {
    if (err instanceof GlobPatternError && budget.steps < 0 && stepCap < MAX_STEPS) throw new GlobBudgetError(pattern, 'steps');
    throw err;
  } finally {
    await top.close();
    if (shared) {
      shared.steps -= stepCap - Math.max(0, budget.steps);
      shared.entries -= Math.min(seen, entryCap + 1);
    }
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
  const probe = template.replace(/\{\{|\}\}|\{[^{}]*\}/g, (m) =>
    m === '{{' ? '{' : m === '}}' ? '}' : m.slice(1, -1).trim() === 'workdir' ? WORKDIR : UNKNOWN,
  );
  let rel = probe;
  if (probe.startsWith(WORKDIR)) rel = probe.slice(1).replace(/^\//, '');
  else if (isAbsolute(probe)) {
    return [
      {
        path,
        file,
        message: `the glob ${template} is an absolute path; a publisher matches files in the step's directory (write a relative pattern or {workdir}/…)`,
      },
    ];
  }
  if (rel.split('/').includes('..'))
    return [{ path, file, message: `the glob ${template} climbs out of the step's directory with ..; a publisher matches files in the step's directory` }];
  return [];
}
