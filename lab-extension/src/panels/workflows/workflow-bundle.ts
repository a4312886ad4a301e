// Turning a workflow file of the Lab's file tree into what the gateway checks and runs: the file
// and every file its $refs reach (read with the Lab's contents API), and the run form's values.
// The step files are found with a pattern over the text (no YAML parser is bundled here): a
// commented-out $ref may add a file that is read and sent along, which does no harm; the gateway
// resolves the real ones and names any that are missing.
import type { WorkflowBundle } from '@af-gateway/schemas';

/** At most this many files go in one bundle (the gateway's limit). */
export const MAX_BUNDLE_FILES = 200;

const REF = /["']?\$ref["']?\s*:\s*(?:"([^"]*)"|'([^']*)'|([^\s,}\]'"]+))/g;

/** The file parts of the $ref values in a YAML or JSON text ('steps.yml#/count' -> 'steps.yml'). */
export function refTargets(text: string): string[] {
  const out = new Set<string>();
  for (const m of text.matchAll(REF)) {
    const value = m[1] ?? m[2] ?? m[3] ?? '';
    const file = value.split('#', 1)[0]!.trim();
    if (file) out.add(file);
  }
  return [...out];
}

/** posix dirname of a relative path ('' at the top). */
export function dirOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

/**
 * `target` as seen from the directory `fromDir`, normalised ('a/../b' -> 'b'); null when it leaves
 * the top (the workflow's directory) or is absolute.
 */
export function joinRelative(fromDir: string, target: string): string | null {
  if (target.startsWith('/')) return null;
  const parts: string[] = [];
  for (const seg of [...fromDir.split('/'), ...target.split('/')]) {
    if (!seg || seg === '.') continue;
    if (seg === '..') {
      if (!parts.length) return null;
      parts.pop();
    } else parts.push(seg);
  }
  return parts.join('/');
}

export interface CollectedBundle {
  /** The entry file's name relative to its directory, and the files keyed the same way. */
  entry: string;
  files: Record<string, string>;
  /** The directory of the entry file in the Lab's tree ('' at the root). */
  dir: string;
  /** $ref targets that could not be read (the gateway reports them with their JSON path). */
  unreadable: { file: string; error: string }[];
}

/**
 * Reads `entryPath` (a path in the Lab's tree) and, breadth first, every file its $refs name,
 * relative to the referring file. `read` answers a file's text by its Lab path.
 */
export async function collectBundle(entryPath: string, read: (path: string) => Promise<string>): Promise<CollectedBundle> {
  const clean = entryPath.replace(/^\/+/, '');
  const dir = dirOf(clean);
  const entry = dir ? clean.slice(dir.length + 1) : clean;
  const files: Record<string, string> = {};
  const unreadable: CollectedBundle['unreadable'] = [];
  const queue = [entry];
  const seen = new Set(queue);
  while (queue.length) {
    const rel = queue.shift()!;
    let text: string;
    try {
      text = await read(dir ? `${dir}/${rel}` : rel);
    } catch (err) {
      if (rel === entry) throw err;
      unreadable.push({ file: rel, error: err instanceof Error ? err.message : String(err) });
      continue;
    }
    files[rel] = text;
    for (const t of refTargets(text)) {
      const target = joinRelative(dirOf(rel), t);
      if (target === null || seen.has(target)) continue;
      if (seen.size >= MAX_BUNDLE_FILES) break;
      seen.add(target);
      queue.push(target);
    }
  }
  return { entry, files, dir, unreadable };
}

/** A parameter as typed in the form: a number when it reads as one, JSON for lists and mappings, else text. */
export function parseParameterValue(text: string): unknown {
  const t = text.trim();
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return Number(t);
  if (t === 'true' || t === 'false') return t === 'true';
  if ((t.startsWith('[') && t.endsWith(']')) || (t.startsWith('{') && t.endsWith('}'))) {
    try {
      return JSON.parse(t) as unknown;
    } catch {
      return text;
    }
  }
  return text;
}

export interface RunFormValue {
  /** One text per init parameter the validation named. */
  parameters: Record<string, string>;
  name: string;
  /** '' for the gateway's default. */
  backend: string;
  /** '' for the gateway's default, else 0–5. */
  retries: string;
}

export const RUN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function validateRunForm(v: RunFormValue): string | null {
  for (const [name, value] of Object.entries(v.parameters)) if (!value.trim()) return `Give a value for ${name}`;
  if (v.name.trim() && !RUN_NAME.test(v.name.trim())) return 'The name may hold letters, digits, _ . - (up to 64, starting with a letter or digit)';
  if (v.retries.trim() && !/^[0-5]$/.test(v.retries.trim())) return 'Retries must be a whole number from 0 to 5';
  return null;
}

/**
 * The request that starts the run. An empty name gives `defaultName` (the workflow's directory
 * name): the gateway sees only the entry's name within that directory, so it would name the run
 * after the file ('workflow').
 */
export function runRequest(bundle: Pick<WorkflowBundle, 'entry' | 'files'>, v: RunFormValue, defaultName = ''): WorkflowBundle {
  const req: WorkflowBundle = { entry: bundle.entry, files: bundle.files };
  const params = Object.entries(v.parameters);
  if (params.length) req.parameters = Object.fromEntries(params.map(([k, text]) => [k, parseParameterValue(text)]));
  const name = v.name.trim() || defaultName;
  if (name) req.name = name;
  if (v.backend) req.backend = v.backend;
  if (v.retries.trim()) req.retries = Number(v.retries.trim());
  return req;
}

/**
 * A run's default name, as the CLI gives it: the entry's directory name (map-reduce/workflow.yml ->
 * map-reduce), else the file's name without extension (at the Lab's root, or when the directory's
 * name has nothing a run name may hold), shaped as the gateway wants run names.
 */
export function defaultRunName(dir: string, entry: string): string {
  for (const candidate of [dir.split('/').pop() ?? '', entry.replace(/\.(ya?ml|json)$/i, '')]) {
    const name = candidate
      .replace(/[^A-Za-z0-9_.-]/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '')
      .slice(0, 64);
    if (name) return name;
  }
  return 'workflow';
}

/** A value under the run's workspace as a path relative to it (for the files route), else null. */
export function workspacePath(workspace: string, value: unknown): string | null {
  if (typeof value !== 'string' || !workspace) return null;
  const root = workspace.endsWith('/') ? workspace : `${workspace}/`;
  if (!value.startsWith(root)) return null;
  const rel = value.slice(root.length);
  return rel && !rel.split('/').includes('..') ? rel : null;
}

/** Is a file name one the "Run as workflow" menu offers itself for? */
export const isWorkflowFile = (name: string) => /\.(ya?ml|json)$/i.test(name);
