// Pluggable authentication. An authenticator turns an Authorization header into a user; sessions
// (a cookie set after the first success) spare the client a challenge on every call.
export interface User {
  name: string;
  groups: string[];
  admin: boolean;
  /** When the credential that proved this identity expires (ms since the epoch), if it does. */
  expiresAt?: number | null;
}

export interface Authenticator {
  /** The WWW-Authenticate value of a 401, telling the client which credentials to send. */
  readonly challenge: string;
  /**
   * The user named by the Authorization header. Null when the header's scheme is not this
   * authenticator's; throws a 401 AppError when the credentials are wrong.
   */
  authenticate(authorization: string): Promise<User | null>;
  /**
   * How long a credential this authenticator accepted may be taken again without asking it
   * (credential-cache.ts), in seconds; never past the credential's own expiry. Unset: as long as a
   * login session lives. Set where a credential can be revoked before it expires (a Hub token).
   */
  readonly cacheSeconds?: number;
  /**
   * The token a login session opened for this credential keeps, to ask its issuer again who it
   * belongs to (a JupyterHub token: Sessions.confirmAtHub); unset where a session's user is fixed
   * when it opens (it lives no longer than the credential's own expiry).
   */
  sessionToken?(authorization: string): string | undefined;
}

export function splitAuthorization(header: string): { scheme: string; credentials: string } {
  const i = header.indexOf(' ');
  return i < 0 ? { scheme: header.toLowerCase(), credentials: '' } : { scheme: header.slice(0, i).toLowerCase(), credentials: header.slice(i + 1).trim() };
}

/**
 * The names the gateway accepts for users, from any authenticator: they become account names,
 * directory names, labels and ClassAd values, so nothing that could be a path ('.', '..', '/'), an
 * option ('-x'), a quote or a control character. Checked once, where a user is first proven.
 */
export const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$/;

export const USER_NAME_RULE = 'user names are 1-64 characters of letters, digits and . _ @ + -, starting with a letter or digit';
