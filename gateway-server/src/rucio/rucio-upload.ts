// Files into the lake without `rucio upload`: a workflow step's published files are uploaded to an
// RSE with the owner's token and registered in Rucio as the owner (replicas, the dataset made when
// missing, attached, kept by a rule of the owner). Each file is checked first: one already on the RSE
// with the same checksum is not uploaded or registered again (a retried step), one with other
// content under the same name is an error naming it. The files lie in directories the owner's steps
// write, so they are opened without following links, each time they are read (checksum, upload).
import type { FileHandle } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import ADLER32 from 'adler-32';
import type { User } from '../auth/authenticator.js';
import { AppError, errorMessage } from '../errors.js';
import type { RucioClient } from './rucio-client.js';
import { ensureDataset, lookUp, nameClash, registerFiles, writePfns, type Did, type FileRecord } from './rucio-lake.js';

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
 * Uploads and registers the files as `user`; returns their DIDs. The steps are those of a notebook's
 * register (rucio-lake.ts), done by the gateway: what Rucio holds under the names is looked up first
 * (other content under one: an error naming it), the dataset is made as the owner before anything is
 * written (so a dataset the owner may not add to stops here), the files Rucio lacks on the RSE are
 * uploaded, then all are registered and attached once. Errors name the file and the reason.
 */
export async function uploadAndRegister(deps: UploadDeps, user: User, target: RegisterTarget, files: FileToRegister[]): Promise<string[]> {
  const c = deps.client;
  const cut = target.dataset.indexOf(':');
  const dataset: Did = { scope: target.dataset.slice(0, cut), name: target.dataset.slice(cut + 1) };
  const what = (f: FileToRegister) => `registering ${f.path} as ${dataset.scope}:${f.name} on ${target.rse}`;
  const fail = (why: string) => new AppError(422, 'register_failed', why);
  // 1. each file's size and checksum, from the file as it is now (opened without following links)
  const records: (FileRecord & { file: FileToRegister })[] = [];
  for (const f of files) {
    const fh = await f.open();
    if (!fh) throw fail(`${what(f)}: it is not a plain file of the step (gone, a link, or a directory)`);
    try {
      records.push({ scope: dataset.scope, name: f.name, ...(await checksum(fh)), file: f });
    } finally {
      await fh.close();
    }
  }
  const step = async <T>(doing: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw fail(`${doing}: ${errorMessage(err)}`);
    }
  };
  const all = `registering ${records.length} file${records.length === 1 ? '' : 's'} in ${target.dataset} on ${target.rse}`;
  // 2. what Rucio has under these names; 3. the dataset, as the owner
  const known = await step(all, () => lookUp(c, user, target.rse, records));
  for (const r of records) {
    const there = known.get(`${r.scope}:${r.name}`);
    const clash = there && nameClash(r, there, r);
    if (clash) throw fail(`${what(r.file)}: ${clash}`);
  }
  await step(all, () => ensureDataset(c, user, dataset));
  // 4. the files the RSE lacks, to where Rucio says they go
  const missing = records.filter((r) => !known.get(`${r.scope}:${r.name}`)?.onRse);
  const pfns = missing.length ? await step(all, () => writePfns(c, user, target.rse, missing)) : new Map<string, string>();
  for (const r of missing) {
    const pfn = pfns.get(`${r.scope}:${r.name}`);
    if (!pfn) throw fail(`${what(r.file)}: RSE ${target.rse} gave no davs:// address to write it to`);
    const fh = await r.file.open();
    if (!fh) throw fail(`${what(r.file)}: it is gone, or no longer a plain file`);
    try {
      await put(pfn.replace(/^davs:/, 'https:'), fh, r, await deps.storageToken(user), deps.timeout ?? 3600);
    } catch (err) {
      throw fail(`${what(r.file)}: ${errorMessage(err)}`);
    } finally {
      await fh.close();
    }
  }
  // 5. replicas, attachments and the owner's rule, once
  await step(all, () =>
    registerFiles(c, user, { rse: target.rse, dataset, files: records.map(({ file: _file, ...rec }) => rec), lifetime: target.lifetime ?? null }),
  );
  return records.map((r) => `${r.scope}:${r.name}`);
}
