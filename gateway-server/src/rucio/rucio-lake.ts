// Files from a notebook into the lake, the gateway's part: where on an RSE the caller is to write
// each file (Rucio's lfns2pfns) and what Rucio already holds under its name, then registering the
// files once the caller has written them. Both act as the caller and are safe to repeat: a file
// Rucio already has on the RSE with the same checksum is not registered again, one with other
// content under the same name is refused naming it. Rucio itself says nothing when a replica is
// registered twice with another checksum (it keeps the first), hence the look before each step.
import type { User } from '../auth/authenticator.js';
import { AppError } from '../errors.js';
import type { RucioClient } from './rucio-client.js';

const enc = encodeURIComponent;

export interface Did {
  scope: string;
  name: string;
}

/** What Rucio knows of a DID: its type and, for a file, checksum, size and whether the RSE holds a replica. */
export interface KnownDid {
  type: string;
  adler32: string | null;
  bytes: number | null;
  onRse: boolean;
}

const key = (d: Did) => `${d.scope}:${d.name}`;

/** Rucio answers NDJSON: one object a line. */
async function lines<T>(res: Response): Promise<T[]> {
  return (await res.text())
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * DIDs per bulk call. Not 1000: Rucio builds one OR over a call's files, and on SQLite an expression
 * 1000 deep is refused (a 500); 500 is what the test server's bootstrap found safe.
 */
const BULK = 500;
/**
 * lfns2pfns takes its names in the query string: keep each URL well under the 4 KiB request line
 * of common WSGI servers (gunicorn's default limit_request_line is 4094).
 */
const MAX_QUERY = 3000;

/**
 * The DIDs among `dids` that Rucio has, by "scope:name" (the others are absent): their type and,
 * for files, checksum, size and whether `rse` holds a replica (in any state).
 */
export async function lookUp(c: RucioClient, user: User, rse: string, dids: Did[]): Promise<Map<string, KnownDid>> {
  const known = new Map<string, KnownDid>();
  const unique = [...new Map(dids.map((d) => [key(d), { scope: d.scope, name: d.name }])).values()];
  for (const part of chunks(unique, BULK)) {
    const res = await c.request(user, 'POST', '/dids/bulkmeta', { dids: part });
    for (const m of await lines<{ scope: string; name: string; did_type?: string; type?: string; adler32?: string | null; bytes?: number | null }>(res)) {
      known.set(key(m), {
        type: String(m.did_type ?? m.type ?? 'FILE').toUpperCase(),
        adler32: m.adler32 ? m.adler32.toLowerCase().padStart(8, '0') : null,
        bytes: typeof m.bytes === 'number' ? m.bytes : null,
        onRse: false,
      });
    }
  }
  const files = unique.filter((d) => known.get(key(d))?.type === 'FILE');
  for (const part of chunks(files, BULK)) {
    // all_states: a replica being written or unavailable is still one: registering it again would be a no-op
    const res = await c.request(user, 'POST', '/replicas/list', { dids: part, all_states: true, ignore_availability: true });
    for (const r of await lines<{ scope: string; name: string; rses?: Record<string, unknown>; states?: Record<string, string> }>(res)) {
      const k = known.get(key(r));
      if (k) k.onRse = Object.hasOwn(r.states ?? {}, rse) || Object.hasOwn(r.rses ?? {}, rse);
    }
  }
  return known;
}

/** Why `mine` cannot go under the name of `theirs`, or null when it is the same file. */
export function nameClash(did: Did, theirs: KnownDid, mine?: { adler32: string; bytes: number }): string | null {
  const name = key(did);
  if (theirs.type !== 'FILE') return `${name} is a ${theirs.type} in Rucio, not a file: give the file another name`;
  if (!mine) return null;
  const differs = (theirs.adler32 !== null && theirs.adler32 !== mine.adler32) || (theirs.bytes !== null && theirs.bytes !== mine.bytes);
  if (!differs) return null;
  return (
    `${name} is already in Rucio with other content (adler32 ${theirs.adler32 ?? 'unknown'}, ${theirs.bytes ?? '?'} bytes; ` +
    `this one: adler32 ${mine.adler32}, ${mine.bytes} bytes): Rucio keeps a name's content for good, so give the file another name`
  );
}

/** One 409 for the conflicts found, naming the first few. */
export function clashError(problems: string[]): AppError {
  const shown = problems.slice(0, 5).join('; ');
  const more = problems.length > 5 ? ` (and ${problems.length - 5} more)` : '';
  return new AppError(409, 'file_conflict', `${shown}${more}`);
}

/** Where `rse` wants each DID written (davs), by "scope:name", as Rucio's lfns2pfns says. */
export async function writePfns(c: RucioClient, user: User, rse: string, dids: Did[]): Promise<Map<string, string>> {
  const pfns = new Map<string, string>();
  const base = `/rses/${enc(rse)}/lfns2pfns?scheme=davs&operation=write`;
  let batch: string[] = [];
  let length = base.length;
  const flush = async () => {
    if (!batch.length) return;
    let answer: Record<string, string> | null;
    try {
      answer = await c.json<Record<string, string> | null>(user, 'GET', `${base}&${batch.join('&')}`);
    } catch (err) {
      // Rucio answers a 500 (RSEProtocolNotSupported) when the RSE has no davs protocol to write with
      if (err instanceof AppError && /^rucio_r_s_e_protocol/.test(err.code)) {
        throw new AppError(
          422,
          'invalid_request',
          `RSE ${rse} offers no davs:// protocol to write to, so files cannot be put there over HTTPS: choose another RSE`,
          {
            cause: err,
          },
        );
      }
      throw err;
    }
    for (const [did, pfn] of Object.entries(answer ?? {})) if (typeof pfn === 'string') pfns.set(did, pfn);
    batch = [];
    length = base.length;
  };
  for (const d of dids) {
    const param = `lfn=${enc(key(d))}`;
    if (batch.length && length + param.length + 1 > MAX_QUERY) await flush();
    batch.push(param);
    length += param.length + 1;
  }
  await flush();
  return pfns;
}

/** Creates the dataset as the caller; false when it exists already. */
export async function ensureDataset(c: RucioClient, user: User, dataset: Did): Promise<boolean> {
  try {
    await c.json(user, 'POST', `/dids/${enc(dataset.scope)}/${enc(dataset.name)}`, { type: 'DATASET' });
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 409) return false; // it exists: attach to it
    throw err;
  }
}

export interface FileRecord extends Did {
  bytes: number;
  adler32: string;
  md5?: string;
  pfn?: string;
}

/**
 * Registers `files` (already written to `rse`) and attaches them to `dataset`, created when missing;
 * with a lifetime, a rule of the caller keeps the dataset on the RSE. Files already registered on
 * the RSE with the same checksum are only attached (when they are not yet); other content under a
 * name Rucio has is refused before anything is made.
 */
export async function registerFiles(
  c: RucioClient,
  user: User,
  req: { rse: string; dataset: Did; files: FileRecord[]; lifetime?: number | null },
): Promise<{ created: boolean; registered: number }> {
  const { rse, dataset } = req;
  const files = req.files.map((f) => ({ ...f, adler32: f.adler32.toLowerCase() }));
  const seen = new Map<string, FileRecord>();
  const problems: string[] = [];
  for (const f of files) {
    const before = seen.get(key(f));
    if (before && (before.adler32 !== f.adler32 || before.bytes !== f.bytes)) problems.push(`${key(f)} is named twice in the request with other content`);
    seen.set(key(f), f);
  }
  if (seen.has(key(dataset))) problems.push(`${key(dataset)} names both the dataset and one of its files`);
  const known = await lookUp(c, user, rse, [...seen.values()]);
  for (const f of seen.values()) {
    const there = known.get(key(f));
    const why = there && nameClash(f, there, f);
    if (why) problems.push(why);
  }
  if (problems.length) throw clashError(problems);

  // 1. the dataset first: Rucio checks the caller may add to its scope before it answers that it
  // exists, so a stranger's request stops here with nothing made
  const created = await ensureDataset(c, user, dataset);
  // 2. the replicas (Rucio checks the caller may write to the RSE and create the files' DIDs)
  const fresh = [...seen.values()].filter((f) => !known.get(key(f))?.onRse);
  for (const part of chunks(fresh, BULK)) {
    await c.json(user, 'POST', '/replicas/', {
      rse,
      files: part.map((f) => ({
        scope: f.scope,
        name: f.name,
        bytes: f.bytes,
        adler32: f.adler32,
        ...(f.md5 ? { md5: f.md5.toLowerCase() } : {}),
        ...(f.pfn ? { pfn: f.pfn } : {}),
      })),
      ignore_availability: false,
    });
  }
  // 3. attach what is not attached yet
  for (const part of chunks([...seen.values()], BULK)) {
    await c.json(user, 'POST', '/dids/attachments', {
      attachments: [{ scope: dataset.scope, name: dataset.name, dids: part.map((f) => ({ scope: f.scope, name: f.name })) }],
      ignore_duplicate: true,
    });
  }
  // 4. the caller's rule, once per dataset and RSE
  if (req.lifetime) {
    const who = await c.json<{ account: string }>(user, 'GET', '/accounts/whoami');
    try {
      await c.json(user, 'POST', '/rules/', {
        dids: [dataset],
        account: who.account,
        copies: 1,
        rse_expression: rse,
        lifetime: req.lifetime,
        grouping: 'DATASET',
      });
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 409) throw err; // the caller's rule from an earlier request
    }
  }
  return { created, registered: fresh.length };
}
