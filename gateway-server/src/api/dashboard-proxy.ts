// Dashboards behind the owner's login: /clusters/<name>/<path> → the scheduler's dashboard <path>,
// for HTTP requests and for the bokeh WebSocket upgrades alike. Route table = the running clusters.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { pipeline, type Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Identifier } from '../auth/identify.js';
import type { Sessions } from '../auth/sessions.js';
import type { ClusterManager } from '../clusters/cluster-manager.js';
import type { ClusterRecord } from '../clusters/model.js';
import { AppError, conflict, errorMessage, forbidden, notFound } from '../errors.js';
import { refuseUpgrade, sameOrigin } from './upgrade.js';
import { authorizedCluster } from './route-auth.js';

const PREFIX = /^\/clusters\/([A-Za-z0-9_-]{1,64})(\/[^?]*)?(\?.*)?$/;
/** The rest of a dashboard path that starts with a capability segment: /~<capability>/<path>. */
const CAPABILITY_PATH = /^\/~([A-Za-z0-9_-]{40,800})(\/.*)?$/;
/**
 * How often a proxied dashboard WebSocket asks again whether its viewer may still see the cluster
 * (as the event stream does): the socket outlives the request that opened it, and a viewer demoted
 * at the Hub who keeps only the socket makes no other request that would learn it.
 */
const RECHECK_MS = 5_000;
/** A re-check that cannot be answered (the Hub or the state store away) keeps the socket this long at most. */
const UNCONFIRMED_MAX_MS = 60_000;

interface Sealed {
  holder: string;
  cluster: string;
  until: number;
  /** The stored key of the login session it was issued to ('' for none): it lives no longer. */
  session: string;
}

/**
 * Capabilities for sandboxed dashboard pages: who was let in, to which cluster, until when and on
 * which login, sealed (AES-256-GCM) with a key of this process, so the page's own scripts (the
 * cluster owner's content) can read nothing in them and forge none; a restarted gateway or another
 * replica sends the browser back to the credentialed route once. They live in URL paths, so logs
 * show them redacted.
 */
export class DashboardCapabilities {
  private readonly key = randomBytes(32);

  constructor(private readonly ttlMs = 3_600_000) {}

  issue(holder: string, cluster: string, session = ''): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const body = Buffer.concat([cipher.update(JSON.stringify([holder, cluster, Date.now() + this.ttlMs, session])), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
  }

  /** What a capability says, if it is ours, unexpired and for `cluster`. */
  open(capability: string, cluster: string): Sealed | null {
    const raw = Buffer.from(capability, 'base64url');
    if (raw.length < 29) return null;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      const text = Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString();
      const [holder, forCluster, until, session] = JSON.parse(text) as [string, string, number, string];
      return forCluster === cluster && until > Date.now() ? { holder, cluster: forCluster, until, session } : null;
    } catch {
      return null; // not sealed with our key, or altered
    }
  }
}

/** A URL path for logs: a dashboard capability in it is replaced. */
export function redactCapability(path: string): string {
  return path.replace(/(\/clusters\/[^/]+\/~)[^/?]+/, '$1[capability]');
}

function dashboardOf(c: ClusterRecord): URL {
  if (c.status === 'PENDING') throw conflict(`Cluster ${c.name} is still starting; its dashboard appears once it runs`, 'not_running');
  if (c.status !== 'RUNNING') throw notFound(`Dashboard of cluster ${c.name} (the cluster is ${c.status.toLowerCase()})`);
  if (!c.dashboardAddress) throw notFound(`Dashboard of cluster ${c.name} (its scheduler runs none)`);
  return new URL(c.dashboardAddress);
}

/**
 * A TLS dashboard (https://) takes only clients with a certificate of the cluster's CA: the proxy
 * presents the cluster's own and checks that the dashboard has one too (the address is loopback, so
 * the name is not checked, the CA is).
 */
function tlsOptions(c: ClusterRecord) {
  return { cert: c.tlsCert, key: c.tlsKey, ca: c.tlsCert, checkServerIdentity: () => undefined };
}

/** Headers for the dashboard: none of the viewer's credentials (cookies, Authorization) leave the gateway. */
function upstreamHeaders(headers: IncomingHttpHeaders, target: URL, prefix: string): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = { ...headers, host: target.host, 'x-forwarded-prefix': prefix };
  delete out.authorization;
  delete out.cookie;
  return out;
}

/**
 * A request's headers without those announcing a body: no body is passed on (read-only), and a
 * Content-Length the dashboard then waited for held the request open (and would have made the
 * next request on a kept-alive connection that body).
 */
function withoutBody(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out = { ...headers };
  delete out['content-length'];
  delete out['transfer-encoding'];
  return out;
}

/**
 * Where a dashboard's redirect sends the viewer: a path of its own stays under its route (and the
 * base path the browser used), a relative one is left as it is, and one to any other origin is
 * dropped. Read as a browser reads it: leading spaces and controls skipped, tabs and newlines
 * removed, backslashes taken as slashes, so '//host', '\/host' and '\\host' are other origins too.
 */
function dashboardLocation(location: string, basePath: string, prefix: string): string | undefined {
  const read = location
    // eslint-disable-next-line no-control-regex -- browsers skip leading control characters and spaces in a Location, so must we
    .replace(/^[\x00-\x20]+/, '')
    .replace(/[\t\n\r]/g, '')
    .replace(/\\/g, '/');
  if (/^[a-z][a-z0-9+.-]*:/i.test(read) || read.startsWith('//')) return undefined;
  if (read.startsWith('/')) return basePath.replace(/\/$/, '') + prefix + read;
  return location;
}

/** The cluster names there can be (the upgrade handler's PREFIX takes the same). */
const CLUSTER_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * A dashboard is the cluster owner's content (their scheduler serves it, their code can change
 * it), shown on the gateway's origin. It is served sandboxed: an opaque origin, so its scripts
 * cannot call the gateway with the viewer's cookies (an admin opening a user's dashboard stays the
 * admin), nor set the gateway's cookies, nor read the viewer's storage. Its own requests, which
 * carry no cookie from an opaque origin, are authorised by a capability in their path instead.
 */
const SANDBOXED: Record<string, string> = {
  'content-security-policy': "sandbox allow-scripts allow-popups allow-downloads; frame-ancestors 'self'",
  'referrer-policy': 'no-referrer', // the capability in the URL stays here
  'x-content-type-options': 'nosniff',
  'cache-control': 'private, no-store',
};

/** Response headers from a dashboard, as the viewer gets them. */
function viewerHeaders(res: IncomingMessage, basePath: string, prefix: string): IncomingHttpHeaders {
  const headers: IncomingHttpHeaders = { ...res.headers };
  delete headers['set-cookie']; // the dashboard sets no cookie on the gateway's origin
  for (const k of Object.keys(headers)) if (k.startsWith('access-control-')) delete headers[k];
  // The dashboard's redirects stay inside its route (and the base path the browser used).
  if (typeof headers.location === 'string') {
    const location = dashboardLocation(headers.location, basePath, prefix);
    if (location === undefined) delete headers.location;
    else headers.location = location;
  }
  return { ...headers, ...SANDBOXED };
}

const READ_ONLY = new Set(['GET', 'HEAD']);

export async function dashboardProxy(
  app: FastifyInstance,
  opts: { clusters: ClusterManager; identifier: Identifier; basePath: string; capabilities: DashboardCapabilities; sessions?: SessionLink },
): Promise<void> {
  const { clusters, capabilities } = opts;
  /**
   * A capability issued to a login session ends with it (a logout), and with the session's right to
   * the cluster (an admin no longer one, on another user's cluster): its page goes back to the
   * credentialed path, which issues a fresh one, asks to log in, or answers 403.
   */
  const stillValid = async (capability: string, cluster: string) => {
    const sealed = capabilities.open(capability, cluster);
    return (
      sealed !== null && (await sessionOpen(opts.sessions, sealed.session)) && (await sessionMay(opts.sessions, sealed.session, await clusters.get(cluster)))
    );
  };
  const base = opts.basePath.replace(/\/$/, '');
  // Dashboards are read-only here: no request bodies to parse or pass on.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  app.get<{ Params: { cluster_name: string } }>(
    '/clusters/:cluster_name',
    {
      schema: {
        hide: true,
        response: { 302: { type: 'null', description: 'To the dashboard' }, '4xx': { $ref: 'error.json' }, '5xx': { $ref: 'error.json' } },
      },
    },
    async (req, reply) => {
      await authorizedCluster(req, clusters, req.params.cluster_name);
      return reply.redirect(`${opts.basePath}clusters/${req.params.cluster_name}/status`);
    },
  );

  const readOnly = (method: string) => {
    if (!READ_ONLY.has(method)) {
      throw new AppError(405, 'method_not_allowed', `Dashboards are read-only through the gateway: ${method} is refused (GET, HEAD and WebSocket only)`, {
        headers: { allow: 'GET, HEAD' },
      });
    }
  };

  // The viewer's own credentials (cookie, Authorization) open a dashboard page: they are sent
  // once, to the plain path, which answers with the page's sandboxed address (a capability); the
  // page and its own requests then use that.
  app.all<{ Params: { cluster_name: string; '*': string } }>(
    '/clusters/:cluster_name/*',
    {
      schema: { hide: true },
      config: { auth: 'user-or-capability' },
    },
    async (req, reply) => {
      readOnly(req.method);
      // No cluster has such a name (and it would be sent back in a redirect as it came, decoded).
      if (!CLUSTER_NAME.test(req.params.cluster_name)) throw notFound(`Cluster ${req.params.cluster_name.slice(0, 100)}`);
      const query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
      const name = req.params.cluster_name;
      // The path as the browser sent it (still percent-encoded), after /clusters/<name>.
      const raw = /^\/clusters\/[^/?]+(\/[^?]*)?/.exec(req.url)?.[1] ?? '/';
      const rest = CAPABILITY_PATH.exec(raw);
      if (!rest) {
        if (raw.startsWith('/~')) throw notFound(`Dashboard page ${raw.slice(0, 100)}`);
        const c = await authorizedCluster(req, clusters, name);
        const cap = capabilities.issue(req.user?.name ?? `cluster:${c.name}`, c.name, opts.sessions?.keyOf(req.headers) ?? req.sessionKey ?? undefined);
        void reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer');
        return reply.redirect(`${base}/clusters/${c.name}/~${cap}${raw}${query}`, 303);
      }
      const [, capability, path = '/'] = rest as unknown as [string, string, string?];
      if (!(await stillValid(capability, name))) {
        // Expired, not ours, or its session ended: back to the credentialed path, which issues a fresh one (or asks to log in).
        void reply.header('cache-control', 'no-store');
        return reply.redirect(`${base}/clusters/${name}${path}${query}`, 303);
      }
      const c = await clusters.get(name);
      if (!c) throw notFound(`Cluster ${name}`);
      const target = dashboardOf(c);
      const prefix = `/clusters/${c.name}/~${capability}`;
      reply.hijack();
      const secure = target.protocol === 'https:';
      const upstream = (secure ? https : http).request(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: `${path}${query}`,
          headers: withoutBody(upstreamHeaders(req.headers, target, prefix)),
          ...(secure ? tlsOptions(c) : {}),
        },
        (res) => {
          reply.raw.writeHead(res.statusCode ?? 502, viewerHeaders(res, opts.basePath, prefix));
          // An answer cut short (the dashboard closed mid-body) ends the viewer's too, rather than leaving it waiting.
          pipeline(res, reply.raw, () => undefined);
        },
      );
      upstream.on('error', (err) => {
        req.log.warn({ cluster: c.name, err: err.message }, 'dashboard request failed');
        if (!reply.raw.headersSent) {
          reply.raw.writeHead(502, { 'content-type': 'application/json' });
          reply.raw.end(JSON.stringify({ error: `The dashboard of cluster ${c.name} did not answer`, code: 'dashboard_unreachable' }));
        } else reply.raw.destroy();
      });
      upstream.end();
    },
  );
}

/** WebSocket upgrades under /clusters/<name>/…: by the page's capability, or by the viewer's own credentials. */
/** What the dashboards need of the login sessions: a capability and its sockets end with the session it was issued to. */
type SessionLink = Pick<Sessions, 'keyOf' | 'isOpen' | 'bindSocketTo' | 'userOfKey'>;

const sessionOpen = async (sessions: SessionLink | undefined, key: string) => !key || !sessions || (await sessions.isOpen(key));

/** Whether the user of the session a capability was issued to may still see the cluster (its owner, or an admin now). */
async function sessionMay(sessions: SessionLink | undefined, key: string, c: ClusterRecord | undefined): Promise<boolean> {
  if (!key || !sessions || !c) return true; // (no session: issued to a credential or a cluster token; no cluster: a 404 follows)
  const user = await sessions.userOfKey(key);
  return user !== undefined && (user.name === c.username || user.admin);
}

export function dashboardUpgradeHandler(deps: {
  clusters: ClusterManager;
  identifier: Identifier;
  log: FastifyBaseLogger;
  capabilities: DashboardCapabilities;
  sessions?: SessionLink;
}) {
  return async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<boolean> => {
    const m = PREFIX.exec(req.url ?? '');
    if (!m) return false;
    socket.on('error', () => socket.destroy());
    // A sandboxed dashboard page (opaque origin, Origin: null, no cookies) connects with the
    // capability in its path; anything else rides on the viewer's own credentials, from our origin.
    const capability = CAPABILITY_PATH.exec(m[2] ?? '');
    if (!capability && !sameOrigin(req)) {
      refuseUpgrade(socket, 403, 'cross_origin', "Dashboards accept WebSocket connections only from the gateway's own pages");
      return true;
    }
    try {
      const c = await deps.clusters.get(m[1]!);
      /** Whether the viewer may still see the cluster (undefined: nothing to ask again, a capability issued to no session). */
      let stillMay: (() => Promise<boolean>) | undefined;
      if (capability) {
        const sealed = deps.capabilities.open(capability[1]!, m[1]!);
        if (!sealed || !(await sessionOpen(deps.sessions, sealed.session))) {
          throw new AppError(401, 'dashboard_capability', 'This dashboard address has expired, is not valid, or its login ended: reload the dashboard page');
        }
        if (!c) throw notFound(`Cluster ${m[1]}`);
        if (!(await sessionMay(deps.sessions, sealed.session, c)))
          throw forbidden(`The login behind this dashboard address may no longer access cluster ${c.name}: reload the page`);
        if (sealed.session) deps.sessions?.bindSocketTo(sealed.session, socket); // closed when that login ends
        if (sealed.session) stillMay = () => sessionMay(deps.sessions, sealed.session, c);
      } else {
        const { user, session } = await deps.identifier.identify(req.headers);
        if (!c) throw notFound(`Cluster ${m[1]}`);
        if (user.name !== c.username && !user.admin) throw forbidden(`User ${user.name} may not access cluster ${c.name}: it belongs to another user`);
        // (the cookie's session, with an Authorization header that proved nobody: the upgrade's own binding passed it over)
        if (session) deps.sessions?.bindSocketTo(session, socket);
        stillMay = async () => {
          const now = await deps.identifier.reidentify(req.headers, socket);
          return now !== undefined && (now.user.name === c.username || now.user.admin);
        };
      }
      const target = dashboardOf(c);
      const upstream =
        target.protocol === 'https:'
          ? tls.connect({ host: target.hostname, port: Number(target.port), ...tlsOptions(c) })
          : net.connect({ host: target.hostname, port: Number(target.port) });
      const headers = upstreamHeaders(req.headers, target, `/clusters/${c.name}${capability ? `/~${capability[1]}` : ''}`);
      const lines = [`${req.method} ${capability ? capability[2] || '/' : (m[2] ?? '/')}${m[3] ?? ''} HTTP/1.1`];
      for (const [k, v] of Object.entries(headers)) {
        for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) lines.push(`${k}: ${one}`);
      }
      upstream.write(lines.join('\r\n') + '\r\n\r\n');
      if (head.length) upstream.write(head);
      socket.pipe(upstream).pipe(socket);
      const close = () => {
        socket.destroy();
        upstream.destroy();
      };
      upstream.on('error', close);
      upstream.on('close', close);
      socket.on('close', close);
      if (stillMay) {
        const ask = stillMay;
        let confirmed = Date.now();
        const recheck = setInterval(() => {
          ask().then(
            (may) => {
              if (!may) close();
              else confirmed = Date.now();
            },
            () => {
              if (Date.now() - confirmed > UNCONFIRMED_MAX_MS) close();
            },
          );
        }, RECHECK_MS).unref();
        socket.once('close', () => clearInterval(recheck));
      }
    } catch (err) {
      if (!(err instanceof AppError)) deps.log.error({ err: errorMessage(err) }, 'dashboard upgrade failed');
      refuseUpgrade(socket, err);
    }
    return true;
  };
}
