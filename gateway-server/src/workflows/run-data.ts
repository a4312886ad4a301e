// A run's input data (yadage-run's data directory): files sent with the submission, kept read-only in
// the run's workspace under .af/data/, and the inits that find them. The workflow's init and each
// subworkflow's init turn a relative string naming a file in their directory into its path and, with
// discover, a glob pattern into its matches, as yadage's init steps do (a fromparjq-pub publisher
// with tryExact, glob and relative_paths over the init's one read-only directory).
//
// The data root is the gateway's: made before the owner may enter the workspace, its directories
// 0755 and files 0644 inside a workspace only the owner's account passes, so the owner's steps read
// it and nobody writes it. The directories an init searches may also be earlier steps' (the user's),
// so every lookup walks by descriptor and never follows a link (files/no-follow.ts).
import { chmod, mkdir, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, posix, relative, resolve } from 'node:path';
import type { Subinits, WorkflowBundle } from '@af-gateway/schemas';
import { AppError } from '../errors.js';
import { existsBelow, openConfined, openDirConfined } from '../files/no-follow.js';
import { setOwn, type NodeRecord, type RunDataDirs, type RunRecord } from './model.js';
import { confinePattern, GlobBudgetError, GlobError, globConfined, GlobPatternError } from './publisher-globs.js';
import { STEP_DIR } from './step-files.js';
import { INIT_STAGE } from './workflow-loader.js';

/** Decoded bytes the files of one run may hold together; bigger inputs belong in storage. */
export const MAX_DATA_BYTES = 8 * 1024 * 1024;
/** Levels of subinits (a subworkflow's subworkflows…). */
export const MAX_SUBINIT_DEPTH = 16;
/** Directories deep a data file may be. */
const MAX_DATA_DEPTH = 32;
/** Characters of a string an init looks up or matches (PATH_MAX): a longer one stays as it was. */
const MAX_NAME_CHARS = 4096;
/**
 * Directories the files may make together: a 70 KB submission of 1,000 files each 31 new directories
 * deep made 31,000 of them (6 s of the gateway's file work, then as many to remove).
 */
const MAX_DATA_DIRS = 1_000;

/** Names one stage's inits may look up (every string of their parameters), and patterns among them they may glob. */
export const MAX_INIT_LOOKUPS = 20_000;
export const MAX_INIT_GLOBS = 1_000;
/**
 * Directory entries and match steps those patterns may take together: every pattern matched over a
 * directory of 1,000 files (the most data a run carries), by simple patterns. One glob alone may take
 * 100,000 entries and 20M steps (publisher-globs.ts); without a shared bound 1,000 of them did.
 */
export const MAX_INIT_ENTRIES = 1_000_000;
export const MAX_INIT_STEPS = 40_000_000;
/** Files and directories those lookups may open together (each name is walked a component at a time): 20,000 names 2.5 deep. */
export const MAX_INIT_OPENS = 50_000;

/** What one stage's inits (or the workflow's init) may spend on lookups together; steps and entries are filled in on first use. */
export interface InitBudget {
  lookups: number;
  globs: number;
  opens?: number;
  steps?: number;
  entries?: number;
}

/** The directory, yadage's default, the workflow's init finds files in when the submission names none. */
export const DEFAULT_INITDIR = 'init';

export type RunData = NonNullable<WorkflowBundle['data']>;

/** The data root of a run's workspace. */
export function dataRoot(workspace: string): string {
  return join(workspace, STEP_DIR, 'data');
}

/** A '/'-separated path inside the data root, normalised; null when it leaves it or is not one. */
function insideData(path: string): string | null {
  if (!path || path.includes('\0') || path.includes('\\') || isAbsolute(path)) return null;
  const norm = posix.normalize(path).replace(/\/+$/, '');
  if (norm === '..' || norm.startsWith('../') || norm.split('/').length > MAX_DATA_DEPTH) return null;
  return norm === '' ? '.' : norm;
}

/** The data's directories, checked: 422 naming the one that leaves the data root. */
export function dataDirs(data: RunData): RunDataDirs {
  const dir = (at: string, v: string) => {
    const inside = insideData(v);
    if (!inside) throw new AppError(422, 'invalid_data', `${at}: ${JSON.stringify(v.slice(0, 200))} is not a relative path inside the run's data`);
    return inside;
  };
  const walk = (tree: Subinits, at: string, depth: number): Subinits => {
    if (depth > MAX_SUBINIT_DEPTH) throw new AppError(422, 'invalid_data', `${at}: subinits nest more than ${MAX_SUBINIT_DEPTH} levels`);
    const out: Subinits = {};
    for (const [k, v] of Object.entries(tree)) {
      if (k === '_data' && typeof v !== 'string') throw new AppError(422, 'invalid_data', `${at}._data: is the subworkflow's own directory, a string`);
      setOwn(out, k, typeof v === 'string' ? dir(`${at}.${k}`, v) : walk(v, `${at}.${k}`, depth + 1));
    }
    return out;
  };
  return {
    initdir: dir('data.initdir', data.initdir ?? DEFAULT_INITDIR),
    ...(data.subinits ? { subinits: walk(data.subinits, 'data.subinits', 1) } : {}),
  };
}

/**
 * Writes the data's files under the workspace's data root (before the owner may enter it): 422 for
 * a name outside it, one that is a file and a directory at once, or more bytes than MAX_DATA_BYTES.
 */
export async function keepDataFiles(workspace: string, data: RunData): Promise<{ files: number; bytes: number }> {
  const root = dataRoot(workspace);
  const decoded: [string, Buffer][] = [];
  const made = new Set<string>();
  let bytes = 0;
  for (const [name, content] of Object.entries(data.files)) {
    const rel = insideData(name);
    if (!rel || rel === '.')
      throw new AppError(422, 'invalid_data', `data.files: ${JSON.stringify(name.slice(0, 200))} is not a relative path inside the run's data`);
    for (let d = posix.dirname(rel); d !== '.' && !made.has(d); d = posix.dirname(d)) made.add(d);
    if (made.size > MAX_DATA_DIRS)
      throw new AppError(
        422,
        'invalid_data',
        `data.files: their paths make more than ${MAX_DATA_DIRS.toLocaleString('en')} directories; keep the files in fewer`,
      );
    const buf = typeof content === 'string' ? Buffer.from(content, 'utf8') : Buffer.from(content.base64, 'base64');
    if ((bytes += buf.length) > MAX_DATA_BYTES) {
      throw new AppError(
        413,
        'data_too_large',
        `data.files hold more than ${MAX_DATA_BYTES / 1024 / 1024} MiB; a run's input files travel with it up to that size, bigger inputs belong in storage (register them in Rucio and pass the dataset)`,
      );
    }
    decoded.push([rel, buf]);
  }
  // (modes set explicitly: the gateway's umask may be stricter, and the owner's steps must read these)
  const dirs = [join(workspace, STEP_DIR), root, ...[...made].map((d) => join(root, d))];
  await mkdir(root, { recursive: true, mode: 0o755 });
  for (const [rel, buf] of decoded) {
    const target = join(root, rel);
    try {
      await mkdir(dirname(target), { recursive: true, mode: 0o755 });
      await writeFile(target, buf, { mode: 0o644, flag: 'wx' });
      await chmod(target, 0o644);
    } catch (err) {
      throw new AppError(
        422,
        'invalid_data',
        `data.files: ${JSON.stringify(rel.slice(0, 200))} cannot be kept with the run's other files (${(err as NodeJS.ErrnoException).code ?? String(err)}); give each file its own path`,
      );
    }
  }
  for (const d of dirs) await chmod(d, 0o755);
  return { files: decoded.length, bytes };
}

/** The directory the init of the workflow finds files in. */
export function initDir(run: RunRecord): string {
  return join(dataRoot(run.workspace), run.data?.initdir ?? DEFAULT_INITDIR);
}

/**
 * The data directory a subworkflow's init finds files in (yadage's subinits), or null. The scope
 * `a[0].b[2]` is looked up as yadage names its providers: a singlestep stage by its name, a
 * multistep (or jq) stage's item by NAME_i.
 */
export function subinitDir(run: RunRecord, scope: string, stageType: (fullName: string) => string | undefined): string | null {
  let tree: Subinits | string | undefined = run.data?.subinits;
  // `a[0].b[2]` → a, 0, b, 2 (a stage name holds no `[`)
  const parts = scope.split(/\[(\d+)\](?:\.|$)/);
  let prefix = '';
  for (let i = 0; i + 1 < parts.length; i += 2) {
    if (!tree || typeof tree === 'string') return null;
    const [name, index] = [parts[i]!, parts[i + 1]!];
    const full = prefix ? `${prefix}.${name}` : name;
    const key = stageType(full) === 'singlestep-stage' ? name : `${name}_${index}`;
    tree = Object.hasOwn(tree, key) ? tree[key] : undefined;
    prefix = `${full}[${index}]`;
  }
  const dir = typeof tree === 'string' ? tree : tree && typeof tree._data === 'string' ? tree._data : null;
  return dir ? join(dataRoot(run.workspace), dir) : null;
}

/** The directories a node's outputs live in, as yadage's states see them: a step's own; an init's what it read. */
export function nodeDirs(n: NodeRecord): string[] {
  return n.readdirs ?? (n.stage === INIT_STAGE || n.stage.endsWith(`].${INIT_STAGE}`) ? [] : [n.workdir]);
}

/** The run's init outputs: its parameters as its init finds them in the data's init directory (GlobError past the bounds). */
export async function initOutputs(run: RunRecord, init: NodeRecord): Promise<Record<string, unknown>> {
  try {
    return await resolveInitValues(run.workspace, init.readdirs ?? [], init.parameters, { discover: true, relative: true });
  } catch (err) {
    if (err instanceof GlobError) throw new AppError(422, 'invalid_data', `the workflow's init: ${err.message}`);
    throw err;
  }
}

/** Whether a file or a directory exists below `root`, reached without following links. */
export async function existsConfined(root: string, path: string): Promise<boolean> {
  const fh = (await openConfined(root, path).catch(() => null)) ?? (await openDirConfined(root, path).catch(() => null));
  await fh?.close();
  return !!fh;
}

/** What one lookup searches: the trusted root, the directory, that directory once opened (null when it is not there) and the shared budget. */
interface Search {
  root: string;
  dir: string;
  top?: Promise<FileHandle | null>;
  budget: Required<InitBudget>;
}

/**
 * A relative string naming a file, as packtivity's publishers read it in `dir` (relative, tryExact,
 * glob): the path of an existing file or directory there, else with `glob` its matches when there are
 * any, else the string as it was. Only `dir` is searched: a string leaving it (..) stays as it was,
 * and so does one no data file could be (a NUL, longer than PATH_MAX, deeper than MAX_DATA_DEPTH).
 */
async function findInDir(s: Search, v: string, glob: boolean): Promise<string | string[]> {
  // (a string past PATH_MAX names no file: 900 KB of 'a/a/…' took 0.3 s of the event loop to be split and joined)
  if (v.length > MAX_NAME_CHARS || v.includes('\0')) return v;
  const search = join(s.dir, v);
  const rel = relative(s.dir, resolve(s.dir, search));
  // ('..x' is a name in dir; only '..' itself climbs)
  if (rel === '..' || rel.startsWith('../') || isAbsolute(rel)) return v;
  const parts = rel === '' ? [] : rel.split('/');
  if (parts.length > MAX_DATA_DEPTH) return v;
  // a directory that is not there, or has a link on its way, holds nothing to find by name
  const top = await (s.top ??= openDirConfined(s.root, s.dir).catch(() => null));
  if (top) {
    // Each name is walked from the directory's descriptor, one open per component: 450 names 1,000
    // directories deep (mallory's step made the tree) kept the gateway opening for 90 s, as 20,000
    // one-word strings did for 15 s when each walked from the workspace, twice.
    if (s.budget.opens <= 0)
      throw new GlobError(
        `its init would open more than ${MAX_INIT_OPENS.toLocaleString('en')} files and directories looking up names in its data; pass fewer names`,
      );
    if (await existsBelow(top, parts, s.budget)) return search;
  }
  if (glob && /[*?[{]/.test(v)) {
    let matches: string[] = [];
    try {
      matches = await globConfined(s.root, s.dir, confinePattern(resolve(s.dir, search), s.dir), s.budget);
    } catch (err) {
      // a string too long or too intricate for a pattern names nothing (a sentence is a parameter too); a link met, or a search too large, says so
      if (!(err instanceof GlobPatternError)) throw err;
    }
    if (matches.length) return matches;
  }
  return v;
}

/**
 * An init's values as yadage's init step publishes them: when it reads exactly one directory, each
 * relative string naming a file there becomes its path, and with discover a pattern its matches.
 * Absolute strings are kept as written (yadage would look for them anywhere on its machine). The
 * budget, shared by one stage's inits, bounds the work: past it a GlobError says which bound.
 */
export async function resolveInitValues(
  root: string,
  dirs: string[],
  values: Record<string, unknown>,
  opts: { discover: boolean; relative: boolean },
  budget: InitBudget = { lookups: MAX_INIT_LOOKUPS, globs: MAX_INIT_GLOBS },
): Promise<Record<string, unknown>> {
  if (dirs.length !== 1 || !opts.relative) return values;
  const dir = dirs[0]!;
  // (opens, steps and entries are shared by every init of the stage, as lookups and globs are)
  budget.opens ??= MAX_INIT_OPENS;
  budget.steps ??= MAX_INIT_STEPS;
  budget.entries ??= MAX_INIT_ENTRIES;
  const s: Search = { root, dir, budget: budget as Required<InitBudget> };
  const leaf = async (v: unknown): Promise<unknown> => {
    if (Array.isArray(v)) {
      const out: unknown[] = [];
      for (const x of v) out.push(await leaf(x));
      return out;
    }
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) setOwn(out, k, await leaf(x));
      return out;
    }
    if (typeof v !== 'string' || isAbsolute(v)) return v;
    if (--budget.lookups < 0)
      throw new GlobError(`its init would look up more than ${MAX_INIT_LOOKUPS.toLocaleString('en')} names in its data; pass fewer strings`);
    const glob = opts.discover && /[*?[{]/.test(v);
    if (glob && --budget.globs < 0)
      throw new GlobError(`its init would match more than ${MAX_INIT_GLOBS.toLocaleString('en')} patterns in its data; pass fewer patterns`);
    try {
      return await findInDir(s, v, opts.discover);
    } catch (err) {
      if (err instanceof GlobBudgetError) {
        const bound =
          err.spent === 'steps'
            ? `take more than ${MAX_INIT_STEPS.toLocaleString('en')} match steps`
            : `look at more than ${MAX_INIT_ENTRIES.toLocaleString('en')} directory entries`;
        throw new GlobError(`its patterns would ${bound} together (at ${err.pattern.slice(0, 200)}); pass fewer or simpler patterns`);
      }
      throw err;
    }
  };
  try {
    return (await leaf(values)) as Record<string, unknown>;
  } finally {
    await (await s.top)?.close();
  }
}
