// Authentication and authorisation, declared per route and enforced by one hook for every route.
// Routes are authenticated unless they say otherwise (config.auth = 'none').
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingHttpHeaders } from 'node:http';
import fp from 'fastify-plugin';
import type { User } from '../auth/authenticator.js';
import type { Identifier, Identity } from '../auth/identify.js';
import type { ClusterManager } from '../clusters/cluster-manager.js';
import type { ClusterRecord } from '../clusters/model.js';
import { AppError, forbidden, notFound } from '../errors.js';
import { splitAuthorization } from '../auth/authenticator.js';
import { sameSecret } from '../auth/same-secret.js';
import { cookiePathFor } from '../auth/sessions.js';
import { sameOrigin } from './upgrade.js';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * user: a logged-in user; cluster: the cluster's own API token (the scheduler); metrics: scraper
 * token or admin; user-or-capability: a logged-in user, or a path whose rest starts with `~` (a
 * capability the route itself must verify: sandboxed dashboard pages carry no cookie).
 */
export type RouteAuth = 'none' | 'user' | 'cluster' | 'user-or-cluster' | 'metrics' | 'user-or-capability';

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: RouteAuth;
  }
  interface FastifyRequest {
    user: User | null;
    /** The request carried the named cluster's own token. */
    clusterToken: boolean;
    /** The login session the identity came from despite an Authorization header of the request (Identity.session). */
    sessionKey: string | null;
  }
}

export interface RouteAuthDeps {
  identifier: Identifier;
  clusters: ClusterManager;
  metricsToken: string | null;
  basePath: string;
  /** Run first on every request: throws the 403 of a Host header the gateway does not answer to. */
  checkHost?: (headers: IncomingHttpHeaders) => void;
  /** Requests wait for it (restart recovery) before they are authenticated. */
  ready?: Promise<void>;
}

export const routeAuth = fp(
  async (app: FastifyInstance, deps: RouteAuthDeps) => {
    app.decorateRequest('user', null);
    app.decorateRequest('clusterToken', false);
    app.decorateRequest('sessionKey', null);
    let ready = deps.ready === undefined;
    void deps.ready?.then(
      () => (ready = true),
      () => undefined, // requests still wait on the promise and fail with it
    );
    const authorize = authorizer(deps);
    // One callback hook for the host check, the wait for recovery and authentication: what it can
    // do synchronously (most requests once their credential is known) it does without a promise.
    app.addHook('onRequest', (req, reply, done) => {
      deps.checkHost?.(req.headers); // a throw here is the request's error
      if (!ready) {
        deps.ready!.then(() => authorize(req, reply)).then(() => done(), done);
        return;
      }
      const pending = authorize(req, reply);
      if (pending) pending.then(() => done(), done);
      else done();
    });
  },
  { name: 'route-auth' },
);

/**
 * Authentication and authorisation of one request: undefined when settled synchronously (a throw
 * refuses), else a promise.
 */
function authorizer(deps: RouteAuthDeps) {
  return (req: FastifyRequest, reply: FastifyReply): Promise<void> | undefined => {
    // A browser sends its cookies (and remembered Basic credentials) with another site's forms and
    // fetches too; it names the page's origin, which must be the gateway's own for any change.
    // Clients that are no browser send no Origin.
    if (!SAFE_METHODS.has(req.method) && !sameOrigin(req.raw)) {
      throw new AppError(
        403,
        'cross_origin',
        `${req.method} requests are accepted only from the gateway's own pages, not from ${String(req.headers.origin).slice(0, 100)}`,
      );
    }
    const mode: RouteAuth = req.routeOptions.config?.auth ?? 'user';
    if (mode === 'none') return;
    if (mode === 'user-or-capability' && (req.params as { '*'?: string })['*']?.startsWith('~')) return;
    const header = req.headers.authorization;
    if ((mode === 'cluster' || mode === 'user-or-cluster') && header) return authorizeCluster(req, reply, mode, header, deps);
    if (mode === 'metrics' && header && deps.metricsToken) {
      const { scheme, credentials } = splitAuthorization(header);
      if (scheme === 'bearer' && sameSecret(credentials, deps.metricsToken)) return;
    }
    const cookiePath = cookiePathFor(req.originalUrl, deps.basePath);
    const known = deps.identifier.identifyNow(req.headers, cookiePath, req.raw.socket);
    if (known) return admit(req, reply, mode, known);
    return deps.identifier.identify(req.headers, cookiePath).then((identity) => admit(req, reply, mode, identity));
  };
}

async function authorizeCluster(req: FastifyRequest, reply: FastifyReply, mode: RouteAuth, header: string, deps: RouteAuthDeps): Promise<void> {
  const { scheme, credentials } = splitAuthorization(header);
  const name = (req.params as { cluster_name?: string }).cluster_name;
  if (scheme === 'token' && name && (await deps.clusters.checkToken(name, credentials))) {
    req.clusterToken = true;
    return;
  }
  if (mode === 'cluster')
    throw new AppError(401, 'invalid_cluster_token', "This route needs the cluster's API token", { headers: { 'WWW-Authenticate': 'token' } });
  const identity = await deps.identifier.identify(req.headers, cookiePathFor(req.originalUrl, deps.basePath));
  admit(req, reply, mode, identity);
}

/** Takes the caller's identity: its cookie to set, and the admin check of the metrics route. */
function admit(req: FastifyRequest, reply: FastifyReply, mode: RouteAuth, identity: Identity): undefined {
  req.user = identity.user;
  req.sessionKey = identity.session ?? null;
  if (identity.setCookie) reply.header('Set-Cookie', identity.setCookie);
  if (mode === 'metrics' && !identity.user.admin) throw forbidden('Metrics are for administrators and the configured scraper token');
  return undefined;
}

/** The cluster, if the caller may act on it: its owner, an admin, or the cluster's own token. */
export async function authorizedCluster(req: FastifyRequest, clusters: ClusterManager, name: string): Promise<ClusterRecord> {
  const c = await clusters.get(name);
  if (!c) throw notFound(`Cluster ${name}`);
  if (req.clusterToken) return c;
  const user = req.user;
  if (!user || (user.name !== c.username && !user.admin)) {
    throw forbidden(`User ${user?.name ?? '(anonymous)'} may not access cluster ${name}: it belongs to another user`);
  }
  return c;
}
