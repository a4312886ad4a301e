// Pure parts of the Rucio panel: a dataset's file rows merged with their replicas, sizes as people
// read them, the notebook cell that defines the file list, and the files a user registers.
import type { RucioFile, RucioReplica } from '@af-gateway/schemas';

export type Scheme = 'davs' | 'root';
export const SCHEMES: Scheme[] = ['davs', 'root'];

/** One row of the file table. */
export interface FileRow {
  scope: string;
  name: string;
  bytes: number;
  adler32: string;
  /** RSEs holding a replica ('' until the replicas arrived). */
  rses: string[];
  /** The first PFN for the chosen scheme ('' when none, or not known yet). */
  pfn: string;
}

export function fileRow(f: RucioFile): FileRow {
  return { scope: f.scope, name: f.name, bytes: f.bytes ?? 0, adler32: f.adler32 ?? '', rses: [], pfn: '' };
}

/**
 * What no PFN holds: control characters (a line break in a copied PFN list pasted into a shell runs
 * what follows it), format characters (a bidi override shows a PFN other than the one copied),
 * private-use and lone surrogates, line and paragraph separators. Rucio's text is untrusted.
 */
const NOT_IN_PFN = /[\p{C}\p{Zl}\p{Zp}]/u;

/**
 * Why one value from Rucio (a DID, a PFN) is not put on the clipboard, or null: one with a line break
 * or another unprintable character (NOT_IN_PFN) pasted into a shell would run what follows the break.
 */
export function copyProblem(text: string): string | null {
  const bad = NOT_IN_PFN.exec(text);
  return bad ? `it holds U+${bad[0].codePointAt(0)!.toString(16).padStart(4, '0').toUpperCase()}, which is not printable (Rucio sent it)` : null;
}

/** The first PFN of a replica row for `scheme`: lowest priority number first, as Rucio orders them; PFNs with unprintable characters are passed over. */
export function firstPfn(replica: Pick<RucioReplica, 'pfns'>, scheme: string): string {
  const prefix = `${scheme}://`;
  let best = '';
  let bestPriority = Number.POSITIVE_INFINITY;
  for (const [pfn, info] of Object.entries(replica.pfns ?? {})) {
    if (!pfn.startsWith(prefix) || NOT_IN_PFN.test(pfn)) continue;
    const priority = info?.priority ?? Number.POSITIVE_INFINITY;
    if (!best || priority < bestPriority) {
      best = pfn;
      bestPriority = priority;
    }
  }
  return best;
}

/** A file row with what its replica row says for `scheme` (the row itself is not changed). */
export function mergeReplica(row: FileRow, replica: RucioReplica, scheme: string): FileRow {
  return {
    ...row,
    bytes: row.bytes || replica.bytes || 0,
    adler32: row.adler32 || replica.adler32 || '',
    rses: Object.keys(replica.rses ?? {}).sort(),
    pfn: firstPfn(replica, scheme),
  };
}

const didKey = (scope: string, name: string) => `${scope}:${name}`;

/**
 * Merges replica rows into file rows in place (they arrive in any order), through an index of the
 * rows by DID; replicas of files not listed yet are added as rows. Returns how many rows changed.
 */
export function applyReplicas(rows: FileRow[], index: Map<string, number>, replicas: RucioReplica[], scheme: string): number {
  for (const r of replicas) {
    const key = didKey(r.scope, r.name);
    let i = index.get(key);
    if (i === undefined) {
      i = rows.length;
      rows.push({ scope: r.scope, name: r.name, bytes: r.bytes ?? 0, adler32: r.adler32 ?? '', rses: [], pfn: '' });
      index.set(key, i);
    }
    rows[i] = mergeReplica(rows[i]!, r, scheme);
  }
  return replicas.length;
}

export function indexRows(rows: FileRow[]): Map<string, number> {
  return new Map(rows.map((r, i) => [didKey(r.scope, r.name), i]));
}

/** Bytes as people read them, in decimal units as Rucio reports sizes: 25.9 MB, 110.3 GB. */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes == null || !Number.isFinite(bytes)) return '—';
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = bytes;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${v} B` : `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}

/** A Python string literal (JSON's escapes are Python's for these characters). */
export function pyString(s: string): string {
  return JSON.stringify(s);
}

/**
 * Rucio's text made safe for a Python comment: a line break in a dataset name (from Rucio, untrusted)
 * would end the comment and put the rest of the name into the cell as code. Control characters and
 * Unicode line/paragraph separators are shown as U+FFFD; a NUL would make the cell unparsable.
 */
function commentText(s: string): string {
  return s.replace(/[\p{Cc}\p{Zl}\p{Zp}]/gu, '\ufffd');
}

/**
 * The notebook cell defining the file list: a Python list literal, one PFN a line, so a 100k-file
 * dataset stays a plain literal the kernel parses fast and a person can read.
 */
export function fileListCell(pfns: string[], did: string, scheme: string): string {
  const header = `# ${pfns.length} file${pfns.length === 1 ? '' : 's'} of ${commentText(did)} (${commentText(scheme)}, first replica of each), from the AF Gateway Rucio panel`;
  if (pfns.length === 0) return `${header}\nfiles = []\n`;
  return `${header}\nfiles = [\n${pfns.map((p) => `    ${pyString(p)},`).join('\n')}\n]\n`;
}

/** The PFN list of the rows (first PFN of each file for the scheme); files without one are counted. */
export function pfnList(rows: FileRow[]): { pfns: string[]; missing: number } {
  const pfns: string[] = [];
  let missing = 0;
  for (const r of rows) {
    if (r.pfn) pfns.push(r.pfn);
    else missing++;
  }
  return { pfns, missing };
}

export interface RegisterFile {
  name: string;
  bytes: number;
  adler32: string;
}

/**
 * The files of the Register outputs dialog: a JSON list of {name, bytes, adler32} or lines
 * `name bytes adler32` (blank lines and # comments skipped). Returns the files or the first problem.
 */
export function parseRegisterFiles(text: string): { files: RegisterFile[]; problem: string | null } {
  const trimmed = text.trim();
  if (!trimmed) return { files: [], problem: 'List the files to register: one "name bytes adler32" a line' };
  const check = (f: RegisterFile, where: string): string | null => {
    if (!f.name || /\s/.test(f.name)) return `${where}: the file name is missing or has spaces`;
    if (!Number.isInteger(f.bytes) || f.bytes < 0) return `${where}: bytes must be a whole number`;
    if (!/^[0-9a-fA-F]{8}$/.test(f.adler32)) return `${where}: adler32 must be 8 hex digits`;
    return null;
  };
  const files: RegisterFile[] = [];
  if (trimmed.startsWith('[')) {
    let list: unknown;
    try {
      list = JSON.parse(trimmed);
    } catch (err) {
      return { files: [], problem: `Not valid JSON: ${(err as Error).message}` };
    }
    if (!Array.isArray(list)) return { files: [], problem: 'The JSON must be a list of {name, bytes, adler32}' };
    for (const [i, item] of list.entries()) {
      const o = (item ?? {}) as Record<string, unknown>;
      const f = { name: String(o.name ?? ''), bytes: Number(o.bytes), adler32: String(o.adler32 ?? '') };
      const problem = check(f, `Item ${i + 1}`);
      if (problem) return { files: [], problem };
      files.push(f);
    }
  } else {
    const lines = trimmed.split('\n');
    for (const [i, raw] of lines.entries()) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      const parts = line.split(/\s+/);
      if (parts.length !== 3) return { files: [], problem: `Line ${i + 1}: expected "name bytes adler32"` };
      const f = { name: parts[0]!, bytes: Number(parts[1]), adler32: parts[2]! };
      const problem = check(f, `Line ${i + 1}`);
      if (problem) return { files: [], problem };
      files.push(f);
    }
  }
  if (files.length === 0) return { files, problem: 'List the files to register: one "name bytes adler32" a line' };
  if (files.length > 10_000) return { files: [], problem: 'At most 10,000 files at a time' };
  return { files, problem: null };
}
