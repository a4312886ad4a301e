// OAuth2 bearer tokens from an OIDC provider (INDIGO IAM, WLCG token profile). JWTs are verified
// with jose against the issuer's key set (discovered, cached, refetched when a token names a new
// key); opaque tokens are introspected (RFC 7662) when configured. The 401 challenge is
// `Bearer` with RFC 6750 error details.
import { createRemoteJWKSet, jwtVerify, errors as joseErrors, decodeProtectedHeader, type JWTPayload } from 'jose';
import { OidcIssuer, type OidcConfig } from './oidc-issuer.js';
import { AppError } from '../errors.js';
import { ConfigError } from '../config.js';
import { splitAuthorization, type Authenticator, type User } from './authenticator.js';

/** The verified identity of a token, with what the session and the token broker need. */
export interface TokenIdentity extends User {
  /** Expiry of the access token, ms since the epoch. */
  expiresAt: number | null;
  /** What the token status shows about the token (no secret). */
  token: TokenFacts;
}

export interface TokenFacts {
  subject: string | null;
  issuer: string | null;
  audience: string[];
  scopes: string[];
  expiresAt: number | null;
}

export class OidcAuthenticator implements Authenticator {
  readonly challenge = 'Bearer realm="af-gateway"';
  private jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  private readonly cfg: OidcConfig;
  /**
   * A JWT cannot be revoked before its exp, so a verified one is taken again until then (or the
   * session's lifetime). An introspected token can be: the provider is asked again after a minute.
   */
  readonly cacheSeconds: number | undefined;

  constructor(
    readonly issuer: OidcIssuer,
    private readonly adminUsers: readonly string[],
    private readonly adminGroups: readonly string[],
  ) {
    this.cfg = issuer.cfg;
    this.cacheSeconds = this.cfg.introspection.enabled ? 60 : undefined;
    if (!this.cfg.audience.length && !this.cfg.allow_any_audience) {
      throw new ConfigError(
        'auth.oidc.audience is empty, so a token the provider issued for any other service would be accepted here: ' +
          "set auth.oidc.audience to this gateway's audience (e.g. [af-gateway]), or auth.oidc.allow_any_audience: true if every token of the provider is meant for this gateway",
      );
    }
  }

  private refuse(description: string, error: 'invalid_token' | 'invalid_request' | 'insufficient_scope' = 'invalid_token'): AppError {
    // RFC 6750: a valid token without the needed scope is a 403, everything else a 401.
    return new AppError(error === 'insufficient_scope' ? 403 : 401, error, `Access token refused: ${description}`, {
      headers: {
        'WWW-Authenticate': `Bearer realm="af-gateway", error="${error}", error_description="${description.replace(/"/g, "'").replace(/[^\x20-\x7e]/g, '?')}"`,
      },
    });
  }

  private async keySet(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    if (!this.jwks) {
      const uri = this.cfg.jwks_uri ?? (await this.issuer.metadata()).jwks_uri;
      if (!uri) throw new AppError(503, 'no_jwks', 'The identity provider publishes no signing keys (jwks_uri)');
      this.jwks = createRemoteJWKSet(new URL(uri), { cooldownDuration: this.cfg.jwks_cooldown * 1000, timeoutDuration: 10_000 });
    }
    return this.jwks;
  }

  async authenticate(authorization: string): Promise<User | null> {
    const { scheme, credentials } = splitAuthorization(authorization);
    if (scheme !== 'bearer') return null;
    return this.verify(credentials);
  }

  /** Verifies an access token and returns who it stands for; throws a 401 saying what is wrong. */
  async verify(token: string): Promise<TokenIdentity> {
    if (!token) throw this.refuse('the Authorization header carries no token', 'invalid_request');
    const claims = looksLikeJwt(token) ? await this.verifyJwt(token) : await this.introspect(token);
    return this.identity(claims);
  }

  private async verifyJwt(token: string): Promise<JWTPayload> {
    // The algorithm is pinned before any key is looked at: never none, never an HMAC keyed with the
    // issuer's public key. (jose's key sets refuse those too; this makes the rule the gateway's own.)
    const alg = decodeProtectedHeader(token).alg;
    const algorithms: string[] = this.cfg.algorithms;
    if (typeof alg !== 'string' || !algorithms.includes(alg)) {
      const named = typeof alg === 'string' && /^[A-Za-z0-9+_-]{1,16}$/.test(alg) ? alg : 'an unrecognised algorithm';
      throw this.refuse(`the token is signed with ${named}, which this gateway does not accept (auth.oidc.algorithms: ${algorithms.join(', ')})`);
    }
    try {
      const { payload } = await jwtVerify(token, await this.keySet(), {
        algorithms,
        issuer: this.cfg.issuer!,
        audience: this.cfg.audience.length ? this.cfg.audience : undefined,
        clockTolerance: this.cfg.clock_skew,
        requiredClaims: ['exp'],
      });
      return payload;
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw this.refuse(describeJoseError(err));
    }
  }

  private async introspect(token: string): Promise<JWTPayload> {
    if (!this.cfg.introspection.enabled) throw this.refuse('not a JWT, and token introspection is not enabled');
    const claims = (await this.issuer.introspect(token)) as JWTPayload & { active?: boolean };
    if (claims.active !== true) throw this.refuse('the identity provider says the token is not active (expired or revoked)');
    const now = Date.now() / 1000;
    // An introspection endpoint may vouch for tokens of other issuers it federates: only ours count.
    if (claims.iss !== this.cfg.issuer) {
      throw this.refuse(
        typeof claims.iss === 'string'
          ? `issued by ${claims.iss.slice(0, 200)}, not by ${this.cfg.issuer}`
          : `the identity provider's introspection answer names no issuer (iss); only tokens of ${this.cfg.issuer} are accepted`,
      );
    }
    if (typeof claims.exp === 'number' && claims.exp + this.cfg.clock_skew < now) throw this.refuse('the token has expired');
    if (this.cfg.audience.length) {
      const aud = Array.isArray(claims.aud) ? claims.aud : claims.aud ? [claims.aud] : [];
      if (!aud.some((a) => this.cfg.audience.includes(a))) throw this.refuse(`the token is not meant for this gateway (audience ${aud.join(', ') || 'none'})`);
    }
    return claims;
  }

  private identity(claims: JWTPayload): TokenIdentity {
    const scopes = scopesOf(claims);
    const missing = this.cfg.required_scopes.filter((s) => !scopes.includes(s));
    if (missing.length) throw this.refuse(`the token lacks the scope${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`, 'insufficient_scope');
    const name = claims[this.cfg.username_claim];
    if (typeof name !== 'string' || !name) throw this.refuse(`the token has no ${this.cfg.username_claim} claim naming the user`);
    let groups: string[] = [];
    for (const c of this.cfg.groups_claims) {
      const v = claims[c];
      if (Array.isArray(v)) {
        groups = v.filter((g): g is string => typeof g === 'string');
        break;
      }
      if (typeof v === 'string') {
        groups = v.split(/[\s,]+/).filter(Boolean);
        break;
      }
    }
    const admin = this.adminUsers.includes(name) || groups.some((g) => this.adminGroups.includes(g));
    const expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : null;
    const audience = Array.isArray(claims.aud) ? claims.aud : claims.aud ? [claims.aud] : [];
    return {
      name,
      groups,
      admin,
      expiresAt,
      token: { subject: claims.sub ?? null, issuer: claims.iss ?? null, audience, scopes, expiresAt },
    };
  }
}

const looksLikeJwt = (t: string) =>
  t.split('.').length === 3 &&
  (() => {
    try {
      decodeProtectedHeader(t);
      return true;
    } catch {
      return false;
    }
  })();

export function scopesOf(claims: JWTPayload): string[] {
  if (typeof claims.scope === 'string') return claims.scope.split(' ').filter(Boolean);
  const scp = (claims as { scp?: unknown }).scp;
  if (Array.isArray(scp)) return scp.filter((s): s is string => typeof s === 'string');
  if (typeof scp === 'string') return scp.split(' ').filter(Boolean);
  return [];
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf':
        return 'the token is not valid yet (nbf)';
      case 'iss':
        return 'the token comes from another issuer';
      case 'aud':
        return 'the token is not meant for this gateway (audience)';
      case 'iat':
        return 'the token was issued in the future (iat)';
      default:
        return `the token's ${err.claim} claim is invalid`;
    }
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'the signature does not verify';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'the token is signed with a key the issuer does not publish';
  if (err instanceof joseErrors.JOSEAlgNotAllowed || err instanceof joseErrors.JOSENotSupported) return 'the token uses an unsupported algorithm';
  if (err instanceof joseErrors.JWTInvalid || err instanceof joseErrors.JWSInvalid) return 'the token is malformed';
  if (err instanceof joseErrors.JWKSTimeout) return "the issuer's keys could not be fetched in time";
  return 'the token could not be verified';
}
