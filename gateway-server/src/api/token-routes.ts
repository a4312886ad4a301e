// Token routes: the caller's token status, their access token (for their own kernel), handing
// over a refresh token, and the gateway's own OIDC login (authorization code + PKCE).
import { createHash, randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { OidcAuthenticator } from '../auth/oidc-authenticator.js';
import { cookiePathFor, type Sessions } from '../auth/sessions.js';
import { LoginStates, sameOriginNext } from '../auth/login-state.js';
import { TokenEndpointError } from '../auth/oidc-issuer.js';
import { AppError } from '../errors.js';
import type { TokenBroker } from '../tokens/token-broker.js';
import type { SchemaTypeProvider } from './type-provider.js';

const errors = { '4xx': { $ref: 'error.json' }, '5xx': { $ref: 'error.json' } } as const;

export interface TokenRoutesOptions {
  broker: TokenBroker;
  oidc: OidcAuthenticator | undefined;
  sessions: Sessions;
  publicUrl: string | null;
  /** Path prefix the gateway is served under ('/' for none), for the redirect URI and the default landing page. */
  basePath: string;
}

export async function tokenRoutes(fastify: FastifyInstance, opts: TokenRoutesOptions): Promise<void> {
  const app = fastify.withTypeProvider<SchemaTypeProvider>();
  const { broker, oidc, sessions } = opts;

  app.get(
    '/api/af/token',
    {
      schema: { tags: ['tokens'], summary: "The caller's token status (never the token)", response: { 200: { $ref: 'token-status.json' }, ...errors } },
    },
    async (req) => broker.status(req.user!),
  );

  app.get(
    '/api/af/token/access',
    {
      schema: {
        tags: ['tokens'],
        summary: "The caller's current access token, for their own kernel; with ?audience=, one exchanged for that service (RFC 8693)",
        querystring: { type: 'object', additionalProperties: false, properties: { audience: { type: 'string', minLength: 1 } } },
        response: { 200: { $ref: 'access-token.json' }, ...errors },
      },
    },
    async (req, reply) => {
      reply.header('cache-control', 'no-store');
      return req.query.audience ? broker.tokenFor(req.user!, req.query.audience) : broker.accessToken(req.user!);
    },
  );

  app.put(
    '/api/af/token/refresh-token',
    {
      schema: {
        tags: ['tokens'],
        summary: 'Hand the broker a refresh token to keep your access token fresh',
        body: { $ref: 'token-handover.json' },
        response: { 200: { $ref: 'token-status.json' }, ...errors },
      },
    },
    async (req) => broker.handOver(req.user!, req.body.refresh_token),
  );

  app.delete(
    '/api/af/token/refresh-token',
    {
      schema: { tags: ['tokens'], summary: 'Make the broker forget your tokens', response: { 204: { type: 'null', description: 'Forgotten' }, ...errors } },
    },
    async (req, reply) => {
      broker.forget(req.user!);
      return reply.code(204).send();
    },
  );

  app.post(
    '/api/af/token/refresh',
    {
      schema: { tags: ['tokens'], summary: 'Refresh your access token now', response: { 200: { $ref: 'token-status.json' }, ...errors } },
    },
    async (req) => broker.refreshNow(req.user!),
  );

  app.post(
    '/api/af/logout',
    {
      // (no login needed: logging out twice, or with an expired session, still clears the cookie)
      config: { auth: 'none' },
      schema: {
        tags: ['auth'],
        summary: "End the caller's browser session: its cookie is cleared and its WebSockets (event stream, dashboards) are closed",
        response: { 204: { type: 'null', description: 'Logged out' }, ...errors },
      },
    },
    async (req, reply) => {
      // (cleared on both paths the gateway answers on: a browser may hold a cookie for each)
      reply.header('Set-Cookie', await sessions.end(req.headers.cookie, [cookiePathFor(req.originalUrl, opts.basePath), '/', opts.basePath]));
      reply.header('cache-control', 'no-store');
      return reply.code(204).send();
    },
  );

  // --- login (authorization code + PKCE, the gateway as a confidential client) -----------------
  const pending = new LoginStates<{ verifier: string; next: string; redirectUri: string }>(sessions.secure);
  const prefix = opts.basePath.replace(/\/$/, '');
  const base = (req: FastifyRequest) => opts.publicUrl?.replace(/\/$/, '') ?? `${req.protocol}://${req.headers.host}${prefix}`;

  app.get(
    '/api/af/login',
    {
      config: { auth: 'none' },
      schema: {
        tags: ['tokens'],
        summary: 'Log in at the identity provider; the broker then keeps your tokens fresh',
        querystring: { type: 'object', properties: { next: { type: 'string' } } },
        response: { 302: { type: 'null', description: 'To the identity provider' }, ...errors },
      },
    },
    async (req, reply) => {
      if (!oidc?.issuer.hasClient()) throw new AppError(409, 'no_login', "Login needs auth.type oidc with the gateway's own client (auth.oidc.client_id)");
      const verifier = randomBytes(32).toString('base64url');
      const next = sameOriginNext(req.query.next, `${prefix}/api/af/token`);
      const redirectUri = `${base(req)}/api/af/login/callback`;
      const { state, setCookie } = pending.begin({ verifier, next, redirectUri }, req.ip, cookiePathFor(req.originalUrl, opts.basePath));
      reply.header('Set-Cookie', setCookie);
      const meta = await oidc.issuer.metadata();
      if (!meta.authorization_endpoint) throw new AppError(503, 'no_authorization_endpoint', 'The identity provider publishes no authorization endpoint');
      const url = new URL(meta.authorization_endpoint);
      const params = {
        ...oidc.issuer.cfg.token_params,
        response_type: 'code',
        client_id: oidc.issuer.cfg.client_id!,
        redirect_uri: redirectUri,
        scope: oidc.issuer.cfg.login_scopes.join(' '),
        state,
        code_challenge: createHash('sha256').update(verifier).digest('base64url'),
        code_challenge_method: 'S256',
        prompt: 'consent',
      };
      for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
      return reply.redirect(url.toString());
    },
  );

  app.get<{ Querystring: { code?: string; state?: string; error?: string; error_description?: string } }>(
    '/api/af/login/callback',
    {
      config: { auth: 'none' },
      schema: {
        tags: ['tokens'],
        summary: 'Where the identity provider sends the browser back',
        hide: true,
        response: { 302: { type: 'null', description: 'To the page the login started from' }, ...errors },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const login = pending.finish(q.state, req.headers.cookie, `${prefix}/api/af/login`);
      if (q.error) throw new AppError(401, 'login_refused', `The identity provider refused the login: ${q.error_description ?? q.error}`);
      if (!q.code) throw new AppError(400, 'login_incomplete', 'The identity provider sent no authorization code');
      let tokens;
      try {
        tokens = await oidc!.issuer.token({ grant_type: 'authorization_code', code: q.code, redirect_uri: login.redirectUri, code_verifier: login.verifier });
      } catch (err) {
        if (err instanceof TokenEndpointError) throw new AppError(401, 'login_refused', `The identity provider refused the login: ${err.message}`);
        throw err;
      }
      const identity = await oidc!.verify(tokens.access_token);
      broker.fromLogin(identity, tokens.access_token, tokens.refresh_token);
      // The broker keeps the tokens fresh, so the browser session may outlive this access token.
      reply.header(
        'Set-Cookie',
        await sessions.create({ name: identity.name, groups: identity.groups, admin: identity.admin }, cookiePathFor(req.originalUrl, opts.basePath)),
      );
      return reply.redirect(login.next);
    },
  );
}
