// SciTokens authentication of the condor tools (backend.htcondor.auth_method: scitokens): condor_submit
// and condor_rm present the cluster owner's access token, the one the token broker keeps in the
// cluster's bearer-token file, and the schedd maps its issuer and subject to the owner's account.
// This file reads what the token says about itself (never verified here: the schedd verifies it) to
// tell the owner, in words they can act on, why the schedd refused it. condor_submit itself says
// only "Failed to authenticate using SCITOKENS" whatever the reason; the schedd's log has the rest.
// Nothing of the token itself ever goes into a message: only its expiry, and its issuer, subject,
// audience and scopes when they are short printable words.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { errorMessage } from '../../errors.js';

/** What a token file says about the token in it (decoded, not verified). */
export interface TokenClaims {
  /** Seconds since the epoch, when the token has an `exp`. */
  expiresAt: number | null;
  issuer: string | null;
  subject: string | null;
  audience: string[];
  scopes: string[];
}

/** The most of a token file read: access tokens are a few KiB; a file the jobs' account filled is not read further. */
const MAX_TOKEN_BYTES = 64 * 1024;

/** A claim value safe to show: printable ASCII without spaces, at most 200 characters. */
function word(v: unknown): string | null {
  return typeof v === 'string' && /^[\x21-\x7e]{1,200}$/.test(v) ? v : null;
}

const NO_CLAIMS: TokenClaims = { expiresAt: null, issuer: null, subject: null, audience: [], scopes: [] };

/**
 * The claims of the token in `file`, or null when there is no such file. The file is the cluster
 * owner's (the broker writes it, their jobs may too): opened without following a link, only a
 * plain file, at most MAX_TOKEN_BYTES read. A file that holds no readable JWT, or that the gateway
 * may not read (the owner's own, in their directory, read by the condor tools acting as them),
 * gives empty claims.
 */
export async function readTokenClaims(file: string): Promise<TokenClaims | null> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    return NO_CLAIMS;
  }
  let text: string;
  try {
    if (!(await fh.stat()).isFile()) return NO_CLAIMS;
    const buf = Buffer.alloc(MAX_TOKEN_BYTES);
    const { bytesRead } = await fh.read(buf, 0, MAX_TOKEN_BYTES, 0);
    text = buf.subarray(0, bytesRead).toString('utf8').trim();
  } finally {
    await fh.close();
  }
  return decodeClaims(text);
}

/** The claims of a JWT's payload (its signature is not checked: that is the schedd's job). */
export function decodeClaims(token: string): TokenClaims {
  let payload: Record<string, unknown> = {};
  try {
    const part = token.split('.')[1] ?? '';
    const parsed: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) payload = parsed as Record<string, unknown>;
  } catch {
    // not a JWT: nothing to tell
  }
  const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  const scope = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
  return {
    expiresAt: typeof payload.exp === 'number' && Number.isFinite(payload.exp) ? payload.exp : null,
    issuer: word(payload.iss),
    subject: word(payload.sub),
    audience: aud.map(word).filter((a): a is string => a !== null),
    scopes: scope.map(word).filter((s): s is string => s !== null),
  };
}

/** The scopes that let a token submit and remove jobs: condor:/WRITE, or the three WLCG compute scopes together. */
export const WRITE_SCOPES = ['compute.create', 'compute.modify', 'compute.cancel'] as const;

/** Why the gateway does not even try: it holds no token for this owner's jobs. */
export function noTokenError(action: string): Error {
  return new Error(
    `HTCondor at this facility takes jobs only with their owner's own access token (backend.htcondor.auth_method: scitokens), and the gateway holds none of yours to ${action} with: ` +
      'send the gateway a request with your token (log in through OIDC), or hand it a refresh token, then try again',
  );
}

const SCITOKENS_REFUSED = /Failed to authenticate using SCITOKENS/;
const DENIED = /Received "DENIED" from server for user (\S+) using method SCITOKENS/;
const NOT_OWNER = /Permission denied to (remove|hold|release) job/;

function seconds(s: number): string {
  const n = Math.round(Math.abs(s));
  return n < 120 ? `${n} s` : n < 7200 ? `${Math.round(n / 60)} min` : `${Math.round(n / 3600)} h`;
}

/**
 * The error a condor tool's failure becomes when the schedd refused the owner's token: what the
 * token says about itself, why that is refused, and what to do. Any other failure is returned as it is.
 * `account` is the account the owner's jobs must be (accounts); `action` says what was being done.
 */
export function explainRefusal(err: unknown, claims: TokenClaims, account: string, action: string, now = Date.now() / 1000): unknown {
  const text = errorMessage(err) + ' ' + String((err as { stderr?: unknown }).stderr ?? '');
  const tool = /^(condor_\w+)/.exec(errorMessage(err))?.[1] ?? 'the condor tool';
  const identity = claims.issuer && claims.subject ? `${claims.issuer},${claims.subject}` : null;
  let why: string | null = null;
  const denied = DENIED.exec(text);
  if (denied) {
    const missing = WRITE_SCOPES.filter((s) => !claims.scopes.includes(s));
    why =
      `the HTCondor schedd took your access token as ${word(denied[1]) ?? 'an account'} but it does not allow you to ${action}: ` +
      `that needs the scope condor:/WRITE or all of ${WRITE_SCOPES.join(', ')}, and your token has ${claims.scopes.length ? claims.scopes.join(' ') : 'no scopes'}` +
      (claims.scopes.includes('condor:/WRITE') || !missing.length ? '' : ` (missing: ${missing.join(', ')})`) +
      '. Ask your identity provider for a token with those scopes';
  } else if (SCITOKENS_REFUSED.test(text)) {
    if (claims.expiresAt !== null && claims.expiresAt <= now) {
      why =
        `the HTCondor schedd refused your access token: it expired ${seconds(now - claims.expiresAt)} ago (at ${new Date(claims.expiresAt * 1000).toISOString()}). ` +
        'Send the gateway a request with a fresh token (log in again), or hand it a refresh token so that it keeps yours fresh';
    } else {
      why =
        'the HTCondor schedd refused your access token' +
        (claims.expiresAt !== null ? ` (it is valid ${seconds(claims.expiresAt - now)} more)` : '') +
        `: it trusts only its own issuers and audiences${claims.audience.length ? ` (yours: issuer ${claims.issuer ?? 'unreadable'}, audience ${claims.audience.join(' ')})` : ''}` +
        ` and maps each token's issuer and subject to an account. Ask the facility to map ${identity ?? 'your token'} to your account ${account}` +
        ' (a CERTIFICATE_MAPFILE line SCITOKENS) and to accept its issuer and audience (SCITOKENS_SERVER_AUDIENCE)';
    }
  } else if (NOT_OWNER.test(text)) {
    why =
      `the HTCondor schedd refused to let your access token ${action}: the jobs are not those of the account it maps your token${identity ? ` (${identity})` : ''} to.` +
      ` Ask the facility to map it to your account ${account}`;
  }
  if (!why) return err;
  return new Error(`${why} (${tool}: ${lastLine(text)})`, { cause: err });
}

function lastLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => SCITOKENS_REFUSED.test(l) || DENIED.test(l) || NOT_OWNER.test(l));
  return (lines.at(-1) ?? '').slice(0, 300);
}
