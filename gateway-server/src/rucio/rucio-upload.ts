// Files into the lake without `rucio upload`: a workflow step's published files are uploaded to an
// RSE with the owner's token and registered in Rucio as the owner (replicas, the dataset made when
// missing, attached, kept by a rule of the owner). Each file is checked first: one already on the RSE
// with the same checksum is not uploaded or registered again (a retried step), one with other
// content under the same name is an error naming it. The files lie in directories the owner's steps
// write, so they are opened by the caller without following links and read once, streaming.
import type { FileHandle } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import ADLER32 from 'adler-32';
import type { User } from '../auth/authenticator.js';
import { AppError, errorMessage } from '../errors.js';
import type { RucioClient } from './rucio-client.js';

export interface RegisterTarget {
  rse: string;
  /** SCOPE:NAME */
  dataset: string;
  /** Seconds a rule of the owner keeps the dataset on the RSE; null or absent: no rule. */
  lifetime?: number | null;
}

export interface FileToRegister {
  /** The file's name in the dataset's scope. */
  name: string;
  /** Where it is, for messages (the step's path). */
  path: string;
  /** Opens it for reading (null when it is gone or not a plain file). */
  open(): Promise<FileHandle | null>;
}

export interface UploadDeps {
  client: RucioClient;
  /** The owner's token for the storage (its audience and scopes), fresh for each file. */
  storageToken(user: User): Promise<string>;
  /** Seconds an upload may take (the whole file). */
  timeout?: number;
}

const enc = encodeURIComponent;

/** Size and Adler-32 (Rucio's checksum: 8 hex digits) of an open file, read once. */
async function checksum(fh: FileHandle): Promise<{ bytes: number; adler32: string }> {
  let sum = 1; // Adler-32's initial value
  let bytes = 0;
  for await (const chunk of fh.createReadStream({ autoClose: false, start: 0 })) {
    sum = ADLER32.buf(chunk as Buffer, sum);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, adler32: (sum >>> 0).toString(16).padStart(8, '0') };
}

/** The DID's replicas as Rucio lists them (one line of JSON per DID), or null when there is no such file. */
async function existing(c: RucioClient, user: User, scope: string, name: string): Promise<{ adler32?: string; rses: string[] } | null> {
  let res: Response;
  try {
    res = await c.request(user, 'GET', `/replicas/${enc(scope)}/${enc(name)}?all_states=true`);
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return null;
    throw err;
  }
  const line = (await res.text()).split('\n').find((l) => l.trim());
  if (!line) return null;
  const r = JSON.parse(line) as { adler32?: string; rses?: Record<string, string[]> };
  return { adler32: r.adler32, rses: Object.keys(r.rses ?? {}) };
}

/** Where the RSE wants the file written, as an https URL (Rucio's lfns2pfns for davs, then https). */
async function writeUrl(c: RucioClient, user: User, rse: string, scope: string, name: string): Promise<string> {
  const did = `${scope}:${name}`;
  const pfns = await c.json<Record<string, string>>(user, 'GET', `/rses/${enc(rse)}/lfns2pfns?lfn=${enc(did)}&scheme=davs&operation=write`);
  const pfn = pfns?.[did];
  if (!pfn) throw new Error(`RSE ${rse} has no davs protocol to write ${did} to`);
  return pfn.replace(/^davs:/, 'https:');
}

/**
 * One request to the storage through node:https, not fetch: fetch sends every header name in lower
 * case, and XRootD's HTTP front end (5.5) reads Authorization and Want-Digest by their exact case.
 */
function storageRequest(
  method: 'PUT' | 'HEAD',
  url: string,
  headers: Record<string, string>,
  timeout: number,
  body?: Readable,
): Promise<{ status: number; statusText: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    // (a connection of its own: XRootD closes one after refusing a request, and a reused one then fails)
    const req = httpsRequest(url, { method, headers, timeout: timeout * 1000, agent: false }, (res) => {
      res.resume(); // the answer's body is not needed
      res.on('end', () => resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeout} s`)));
    req.on('error', reject);
    if (body) {
      body.on('error', (err) => req.destroy(err));
      body.pipe(req);
    } else req.end();
  });
}

/** The Adler-32 the storage holds for a file (RFC 3230 Want-Digest), or null when it has none or no such file. */
async function storedDigest(url: string, token: string, timeout: number): Promise<string | null> {
  try {
    const res = await storageRequest('HEAD', url, { Authorization: `Bearer ${token}`, 'Want-Digest': 'adler32' }, timeout);
    const digest = String(res.headers.digest ?? '');
    const m = /(?:^|,)\s*adler32=([0-9a-fA-F]{1,8})/.exec(digest);
    return res.status === 200 && m ? m[1]!.toLowerCase().padStart(8, '0') : null;
  } catch {
    return null;
  }
}

/** Uploads one file with a PUT of the owner's storage token (the body streamed from the open file). */
async function put(url: string, fh: FileHandle, sum: { bytes: number; adler32: string }, token: string, timeout: number): Promise<void> {
  let res: { status: number; statusText: string };
  try {
    res = await storageRequest(
      'PUT',
      url,
      { Authorization: `Bearer ${token}`, 'Content-Length': String(sum.bytes) },
      timeout,
      fh.createReadStream({ autoClose: false, start: 0 }),
    );
  } catch (err) {
    throw new Error(`the storage could not be reached: ${errorMessage(err)}`, { cause: err });
  }
  const ok = res.status >= 200 && res.status < 300;
  // An earlier attempt may have written it and failed before registering: the same content is fine.
  if (!ok && (await storedDigest(url, token, timeout)) === sum.adler32) return;
  if (res.status === 401 || res.status === 403) {
    throw new Error(`the storage refused the owner's token for ${url} (HTTP ${res.status}): it needs the scope storage.create:/ for this path`);
  }
  if (!ok) throw new Error(`the storage answered HTTP ${res.status} ${res.statusText} for ${url}`);
}

/**
 * Uploads and registers the files as `user`; returns the DIDs registered or found already there.
 * Throws an AppError naming the file and the reason on the first that fails (those before stay
 * registered: a retry finds them and goes on).
 */
export async function uploadAndRegister(deps: UploadDeps, user: User, target: RegisterTarget, files: FileToRegister[]): Promise<string[]> {
  const c = deps.client;
  const cut = target.dataset.indexOf(':');
  const [scope, dataset] = [target.dataset.slice(0, cut), target.dataset.slice(cut + 1)];
  const dids: string[] = [];
  const fresh: { scope: string; name: string; bytes: number; adler32: string }[] = [];
  for (const f of files) {
    const fail = (why: string) => new AppError(422, 'register_failed', `registering ${f.path} as ${scope}:${f.name} on ${target.rse}: ${why}`);
    const fh = await f.open();
    if (!fh) throw fail('it is not a plain file of the step (gone, a link, or a directory)');
    try {
      const sum = await checksum(fh);
      const there = await existing(c, user, scope, f.name);
      if (there && there.adler32 && there.adler32 !== sum.adler32) {
        throw fail(
          `Rucio already has a file of that name with other content (adler32 ${there.adler32}, this one ${sum.adler32}); name the outputs differently`,
        );
      }
      if (!there?.rses.includes(target.rse)) {
        const url = await writeUrl(c, user, target.rse, scope, f.name);
        await put(url, fh, sum, await deps.storageToken(user), deps.timeout ?? 3600);
        fresh.push({ scope, name: f.name, ...sum });
      }
      dids.push(`${scope}:${f.name}`);
    } catch (err) {
      if (err instanceof AppError && err.code === 'register_failed') throw err;
      throw fail(errorMessage(err));
    } finally {
      await fh.close();
    }
  }
  const what = `registering ${fresh.length} file${fresh.length === 1 ? '' : 's'} in ${target.dataset} on ${target.rse}`;
  try {
    if (fresh.length) await c.json(user, 'POST', '/replicas/', { rse: target.rse, files: fresh, ignore_availability: false });
    try {
      await c.json(user, 'POST', `/dids/${enc(scope)}/${enc(dataset)}`, { type: 'DATASET' });
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 409) throw err; // it exists: attach to it
    }
    const attach = dids.map((d) => ({ scope, name: d.slice(cut + 1) }));
    try {
      await c.json(user, 'POST', `/dids/${enc(scope)}/${enc(dataset)}/dids`, { dids: attach, rse: target.rse });
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 409) throw err; // attached by an earlier attempt
    }
    if (target.lifetime) {
      const who = await c.json<{ account: string }>(user, 'GET', '/accounts/whoami');
      try {
        await c.json(user, 'POST', '/rules/', {
          dids: [{ scope, name: dataset }],
          account: who.account,
          copies: 1,
          rse_expression: target.rse,
          lifetime: target.lifetime,
          grouping: 'DATASET',
        });
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 409) throw err; // the owner's rule from an earlier step
      }
    }
  } catch (err) {
    throw new AppError(422, 'register_failed', `${what}: ${errorMessage(err)}`);
  }
  return dids;
}
