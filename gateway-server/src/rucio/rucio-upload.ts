// Files into the lake without `rucio upload`: a workflow step's published files are uploaded to an
// RSE with the owner's token and registered in Rucio as the owner (replicas, the dataset made when
// missing, attached, kept by a rule of the owner). Each file is checked first: one already on the RSE
// with the same checksum is not uploaded or registered again (a retried step), one with other
// content under the same name is an error naming it. The files lie in directories the owner's steps
// write, so they are opened without following links, each time they are read (checksum, upload).
import type { FileHandle } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { Readable, Transform } from 'node:stream';
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
  /** Seconds an upload may take (the whole file, not only a silence). */
  timeout?: number;
  /** CAs to trust for the storage besides Node's own (tests; a facility sets NODE_EXTRA_CA_CERTS). */
  ca?: string;
}

/** Files at least this long must have most of their bytes on disk (not a sparse file's holes). */
const SPARSE_FROM = 16 * 1024 * 1024;

/** Seconds a HEAD asking the storage for a file's digest may take. */
const DIGEST_TIMEOUT = 60;

/**
 * The https URL to PUT a PFN of Rucio's to, or why not. The owner's storage token goes with the
 * request, so it goes only where the PFN's own words say: davs:// is read as https:// (nothing else
 * is sent: no http, no other scheme), and a PFN the URL parser would read otherwise than written
 * is refused: a name with `?` or `#` (the rest would not be part of the path), `%` (`%2e%2e` is a
 * climb to the parser), `.`/`..` segments (a climb out of the RSE's prefix), a user part before the
 * host, or anything outside printable ASCII. Run names and a step's file names are the owner's words,
 * and Rucio's name schema is the facility's choice: what reaches the storage is checked here.
 */
export function storageUrl(pfn: string): string {
  const https = pfn.replace(/^davs:\/\//, 'https://');
  if (!https.startsWith('https://'))
    throw new Error(`Rucio gave ${JSON.stringify(pfn.slice(0, 200))}, not a davs:// or https:// address: nothing is sent there`);
  const rest = https.slice('https://'.length);
  const slash = rest.indexOf('/');
  const path = slash < 0 ? '/' : rest.slice(slash);
  let url: URL;
  try {
    url = new URL(https);
  } catch {
    throw new Error(`Rucio gave ${JSON.stringify(pfn.slice(0, 200))}, which is no URL: nothing is sent there`);
  }
  const authority = rest.slice(0, slash < 0 ? rest.length : slash);
  const odd =
    !/^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$/.test(authority) ||
    /[^!-~]|[?#%\\]/.test(path) ||
    /(^|\/)\.\.?(\/|$)/.test(path) ||
    url.pathname !== path;
  if (odd)
    throw new Error(
      `the address Rucio gave for it (${JSON.stringify(pfn.slice(0, 300))}) would be read as another place than it names: nothing is sent there; give the file a plainer name`,
    );
  return url.href;
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
  ca?: string,
): Promise<{ status: number; statusText: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    // (a connection of its own: XRootD closes one after refusing a request, and a reused one then fails)
    const req = httpsRequest(url, { method, headers, timeout: timeout * 1000, agent: false, ...(ca ? { ca } : {}) }, (res) => {
      res.resume(); // the answer's body is not needed
      res.on('end', () => resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: res.headers }));
      res.on('error', reject);
    });
    // `timeout` above is a silence; a storage reading a body slowly is never silent: the whole request
    // has a deadline too, so one step's upload cannot hold its run's tick (and a shutdown) for ever
    const deadline = setTimeout(() => req.destroy(new Error(`not done within ${timeout} s`)), timeout * 1000);
    req.on('close', () => clearTimeout(deadline));
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeout} s`)));
    req.on('error', reject);
    if (body) {
      body.on('error', (err) => req.destroy(err));
      body.pipe(req);
    } else req.end();
  });
}

/** The Adler-32 the storage holds for a file (RFC 3230 Want-Digest), or null when it has none or no such file. */
async function storedDigest(url: string, token: string, timeout: number, ca?: string): Promise<string | null> {
  try {
    const res = await storageRequest('HEAD', url, { Authorization: `Bearer ${token}`, 'Want-Digest': 'adler32' }, timeout, undefined, ca);
    const digest = String(res.headers.digest ?? '');
    const m = /(?:^|,)\s*adler32=([0-9a-fA-F]{1,8})/.exec(digest);
    return res.status === 200 && m ? m[1]!.toLowerCase().padStart(8, '0') : null;
  } catch {
    return null;
  }
}

class ChangedError extends Error {}

/**
 * The body of a file's PUT: exactly the bytes that were summed. The file is opened a second time to
 * be sent, and its owner may still be writing it (a step's process left running, another run): what
 * is sent is summed again on its way and its last piece held back until everything read is known to
 * have the size and Adler-32 that Rucio will be given; otherwise the request ends before the storage
 * has the whole body, so it never stores content other than the one registered. Reading stops at the
 * size summed: a file grown since is not sent past the Content-Length (the storage would read the
 * surplus on the connection as a request of its own, made from the owner's bytes).
 */
function exactBody(fh: FileHandle, sum: { bytes: number; adler32: string }): Readable {
  const source = sum.bytes ? fh.createReadStream({ autoClose: false, start: 0, end: sum.bytes - 1 }) : Readable.from([]);
  let adler = 1;
  let bytes = 0;
  let held: Buffer | null = null;
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      adler = ADLER32.buf(chunk, adler);
      bytes += chunk.length;
      const out = held;
      held = chunk;
      done(null, out ?? undefined);
    },
    flush(done) {
      const got = (adler >>> 0).toString(16).padStart(8, '0');
      if (bytes !== sum.bytes || got !== sum.adler32) {
        done(
          new ChangedError(
            `it changed while it was being uploaded (${sum.bytes} bytes, adler32 ${sum.adler32} when summed; now ${bytes} bytes, ${got}): nothing of it is registered`,
          ),
        );
      } else done(null, held ?? undefined);
    },
  });
  source.on('error', (err: Error) => check.destroy(err));
  return source.pipe(check);
}

/** Uploads one file with a PUT of the owner's storage token (the body streamed from the open file, as summed). */
async function put(url: string, fh: FileHandle, sum: { bytes: number; adler32: string }, token: string, timeout: number, ca?: string): Promise<void> {
  let res: { status: number; statusText: string };
  try {
    res = await storageRequest('PUT', url, { Authorization: `Bearer ${token}`, 'Content-Length': String(sum.bytes) }, timeout, exactBody(fh, sum), ca);
  } catch (err) {
    if (err instanceof ChangedError) throw err;
    throw new Error(`the storage could not be reached: ${errorMessage(err)}`, { cause: err });
  }
  const ok = res.status >= 200 && res.status < 300;
  // An earlier attempt may have written it and failed before registering: the same content is fine.
  if (!ok && (await storedDigest(url, token, Math.min(timeout, DIGEST_TIMEOUT), ca)) === sum.adler32) return;
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
      // A sparse file costs its owner nothing and the gateway a read of every byte it claims (1 TiB:
      // most of an hour of summing, then the same to send): refused before any of it is read.
      const st = await fh.stat();
      if (st.size >= SPARSE_FROM && st.blocks * 512 < st.size / 2) {
        throw fail(`${what(f)}: it is a sparse file (${st.size} bytes, ${st.blocks * 512} of them on disk): write its bytes out, or register a smaller file`);
      }
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
    let url: string;
    try {
      url = storageUrl(pfn);
    } catch (err) {
      throw fail(`${what(r.file)}: ${errorMessage(err)}`);
    }
    const fh = await r.file.open();
    if (!fh) throw fail(`${what(r.file)}: it is gone, or no longer a plain file`);
    try {
      await put(url, fh, r, await deps.storageToken(user), deps.timeout ?? 3600, deps.ca);
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
