// Dashboards behind the owner's login: /clusters/<name>/<path> → the scheduler's dashboard <path>,
// for HTTP requests and for the bokeh WebSocket upgrades alike. Route table = the running clusters.
import http, { type IncomingMessage, type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Identifier } from '../auth/identify.js';
import { withoutSessionCookie } from '../auth/sessions.js';
import type { ClusterManager } from '../clusters/cluster-manager.js';
import type { ClusterRecord } from '../clusters/model.js';
import { AppError, conflict, errorMessage, forbidden, notFound } from '../errors.js';
import { refuseUpgrade, sameOrigin } from './upgrade.js';
import { authorizedCluster } from './route-auth.js';

const PREFIX = /^\/clusters\/([A-Za-z0-9_-]{1,64})(\/[^?]*)?(\?.*)?$/;

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

/** Headers for the dashboard: the gateway's credentials stay here. */
function upstreamHeaders(headers: IncomingHttpHeaders, target: URL, prefix: string): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = { ...headers, host: target.host, 'x-forwarded-prefix': prefix };
  delete out.authorization;
  const cookie = withoutSessionCookie(headers.cookie);
  if (cookie) out.cookie = cookie;
  else delete out.cookie;
  return out;
}

export async function dashboardProxy(
  app: FastifyInstance,
  opts: { clusters: ClusterManager; identifier: Identifier; basePath: string },
): Promise<void> {
  const { clusters } = opts;
  // Bodies pass through untouched.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  app.get<{ Params: { cluster_name: string } }>('/clusters/:cluster_name', { schema: { hide: true } }, async (req, reply) => {
    await authorizedCluster(req, clusters, req.params.cluster_name);
    return reply.redirect(`${opts.basePath}clusters/${req.params.cluster_name}/status`);
  });

  app.all<{ Params: { cluster_name: string; '*': string } }>('/clusters/:cluster_name/*', { schema: { hide: true } }, async (req, reply) => {
    const c = await authorizedCluster(req, clusters, req.params.cluster_name);
    const target = dashboardOf(c);
    const prefix = `/clusters/${c.name}`;
    const query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
    reply.hijack();
    const secure = target.protocol === 'https:';
    const upstream = (secure ? https : http).request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: `/${req.params['*']}${query}`,
        headers: upstreamHeaders(req.headers, target, prefix),
        ...(secure ? tlsOptions(c) : {}),
      },
      (res) => {
        const headers = { ...res.headers };
        const loc = headers.location;
        // The dashboard's absolute redirects stay inside its route (and the base path the browser used).
        if (typeof loc === 'string' && loc.startsWith('/')) headers.location = opts.basePath.replace(/\/$/, '') + prefix + loc;
        reply.raw.writeHead(res.statusCode ?? 502, headers);
        res.pipe(reply.raw);
      },
    );
    upstream.on('error', (err) => {
      req.log.warn({ cluster: c.name, err: err.message }, 'dashboard request failed');
      if (!reply.raw.headersSent) {
        reply.raw.writeHead(502, { 'content-type': 'application/json' });
        reply.raw.end(JSON.stringify({ error: `The dashboard of cluster ${c.name} did not answer`, code: 'dashboard_unreachable' }));
      } else reply.raw.destroy();
    });
    const body = req.body as NodeJS.ReadableStream | undefined;
    if (body && typeof body.pipe === 'function') body.pipe(upstream);
    else upstream.end();
  });
}

/** WebSocket upgrades under /clusters/<name>/…, authenticated like every other request. */
export function dashboardUpgradeHandler(deps: { clusters: ClusterManager; identifier: Identifier; log: FastifyBaseLogger }) {
  return async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<boolean> => {
    const m = PREFIX.exec(req.url ?? '');
    if (!m) return false;
    socket.on('error', () => socket.destroy());
    if (!sameOrigin(req)) {
      refuseUpgrade(socket, 403, 'cross_origin', 'Dashboards accept WebSocket connections only from the gateway\'s own pages');
      return true;
    }
    try {
      const { user } = await deps.identifier.identify(req.headers);
      const c = await deps.clusters.get(m[1]!);
      if (!c) throw notFound(`Cluster ${m[1]}`);
      if (user.name !== c.username && !user.admin) throw forbidden(`User ${user.name} may not access cluster ${c.name}: it belongs to another user`);
      const target = dashboardOf(c);
      const upstream =
        target.protocol === 'https:'
          ? tls.connect({ host: target.hostname, port: Number(target.port), ...tlsOptions(c) })
          : net.connect({ host: target.hostname, port: Number(target.port) });
      const headers = upstreamHeaders(req.headers, target, `/clusters/${c.name}`);
      const lines = [`${req.method} ${m[2] ?? '/'}${m[3] ?? ''} HTTP/1.1`];
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
    } catch (err) {
      if (!(err instanceof AppError)) deps.log.error({ err: errorMessage(err) }, 'dashboard upgrade failed');
      refuseUpgrade(socket, err);
    }
    return true;
  };
}
