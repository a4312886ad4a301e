// Browser sessions through JupyterHub's OAuth, for a gateway registered as a Hub service and
// reached under the Hub's origin (/services/<name>/...): the Hub logs the user in, the gateway
// exchanges the code for a Hub token, asks the Hub who it is, and opens its own session, which keeps
// the token and asks the Hub again at most every minute (sessions.ts): the Hub's word stays the rights.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Sessions } from '../auth/sessions.js';
import { LoginStates, sameOriginNext } from '../auth/login-state.js';
import type { JupyterHubAuthenticator } from '../auth/jupyterhub-authenticator.js';
import { AppError, errorMessage } from '../errors.js';
import type { SchemaTypeProvider } from './type-provider.js';

export interface HubLoginOptions {
  /** Told of each user who logged in (the broker then looks at their auth_state). */
  onLogin?: (user: import('../auth/authenticator.js').User) => void;
  hub: JupyterHubAuthenticator;
  sessions: Sessions;
  apiUrl: string;
  apiToken: string | null;
  clientId: string;
  callbackUrl: string | null;
  authorizeUrl: string;
  basePath: string;
}

export async function hubLoginRoutes(fastify: FastifyInstance, opts: HubLoginOptions): Promise<void> {
  const app = fastify.withTypeProvider<SchemaTypeProvider>();
  const pending = new LoginStates<{ next: string }>(opts.sessions.secure);
  const callbackUrl = (req: FastifyRequest) => opts.callbackUrl ?? `${req.protocol}://${req.headers.host}${opts.basePath}oauth_callback`;

  app.get(
    '/api/af/hub-login',
    {
      config: { auth: 'none' },
      schema: {
        tags: ['auth'],
        summary: "Log in through JupyterHub's OAuth (browser sessions under the Hub's origin)",
        querystring: { type: 'object', properties: { next: { type: 'string' } } },
        response: { 302: { type: 'null', description: 'To the Hub' }, '4xx': { $ref: 'error.json' }, '5xx': { $ref: 'error.json' } },
      },
    },
    async (req, reply) => {
      if (!opts.apiToken)
        throw new AppError(409, 'no_hub_client', "Hub login needs the gateway's Hub service token (auth.jupyterhub.api_token or JUPYTERHUB_API_TOKEN)");
      const next = sameOriginNext(req.query.next, `${opts.basePath}api/af/clusters`);
      const { state, setCookie } = pending.begin({ next }, req.ip, opts.basePath);
      reply.header('Set-Cookie', setCookie);
      const params = new URLSearchParams({ client_id: opts.clientId, redirect_uri: callbackUrl(req), response_type: 'code', state });
      return reply.redirect(`${opts.authorizeUrl}?${params}`);
    },
  );

  app.get<{ Querystring: { code?: string; state?: string; error?: string } }>(
    '/oauth_callback',
    {
      config: { auth: 'none' },
      schema: {
        tags: ['auth'],
        summary: 'Where JupyterHub sends the browser back',
        hide: true,
        response: { 302: { type: 'null', description: 'To the page the login started from' }, '4xx': { $ref: 'error.json' }, '5xx': { $ref: 'error.json' } },
      },
    },
    async (req, reply) => {
      const login = pending.finish(req.query.state, req.headers.cookie, `${opts.basePath}api/af/hub-login`);
      if (req.query.error || !req.query.code) throw new AppError(401, 'login_refused', `JupyterHub refused the login: ${req.query.error ?? 'no code'}`);
      let token: string;
      try {
        const res = await fetch(`${opts.apiUrl.replace(/\/$/, '')}/oauth2/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({
            grant_type: 'authorization_code',
            code: req.query.code,
            client_id: opts.clientId,
            client_secret: opts.apiToken!,
            redirect_uri: callbackUrl(req),
          }),
          signal: AbortSignal.timeout(10_000),
        });
        const body = (await res.json().catch(() => ({}))) as { access_token?: string; error?: string };
        if (!res.ok || !body.access_token) throw new Error(body.error ?? `HTTP ${res.status}`);
        token = body.access_token;
      } catch (err) {
        throw new AppError(401, 'login_refused', `JupyterHub did not complete the login: ${errorMessage(err)}`, { cause: err });
      }
      const user = await opts.hub.authenticate(`token ${token}`);
      if (!user) throw new AppError(401, 'login_refused', 'JupyterHub did not say who logged in');
      // the Hub's token stays with the session (sealed in the store) so the Hub can be asked again who it is
      reply.header('Set-Cookie', await opts.sessions.create(user, opts.basePath, token));
      opts.onLogin?.(user);
      return reply.redirect(login.next);
    },
  );
}
