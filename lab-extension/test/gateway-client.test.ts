// The panels' API client and models against a real gateway (local backend, real Dask processes).
import { describe, expect, it } from 'vitest';
import { GatewayClient, GatewayError } from '../src/api/gateway-client';
import { until } from './until';
import { useRealGateway } from './real-gateway';
import { ClustersModel } from '../src/panels/clusters/clusters-model';
import { TokenModel } from '../src/panels/tokens/token-model';
import { GatewaySession } from '../src/session/gateway-session';

const gw = useRealGateway('af-lab-client-', {
  cluster_options: [{ field: 'worker_cores', type: 'int', label: 'Worker cores', default: 1, min: 1, max: 2, target: 'worker_cores' }],
});
const { clientFor, socketsFor } = gw;

describe('GatewayClient', () => {
  it('reads the options form and how kernels connect', async () => {
    const client = clientFor('erin');
    const spec = await client.options();
    expect(spec.cluster_options).toEqual([
      { field: 'display_name', label: 'Name', default: '', spec: { type: 'string' } },
      { field: 'worker_cores', label: 'Worker cores', default: 1, spec: { type: 'int', min: 1, max: 2 } },
    ]);
    const info = await client.connectInfo();
    expect(info).toEqual({
      address: gw.url,
      proxy_address: `gateway://${gw.url.replace('http://', '')}`,
      auth: 'basic',
      username: 'erin',
      workflow_backends: ['local'],
    });
  });

  it("shows the gateway's own error messages", async () => {
    const client = clientFor('erin');
    const unknown = await client.getCluster('no-such-cluster').catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(GatewayError);
    expect(unknown).toMatchObject({ status: 404, message: expect.stringContaining('no-such-cluster') });
    const invalid = await client.createCluster({ worker_cores: 9 }).catch((e: unknown) => e);
    expect(invalid).toMatchObject({ status: 422, message: expect.stringContaining('worker_cores') });
    expect(await client.listClusters()).toEqual({ clusters: [] }); // nothing half-created
    const anonymous = new GatewayClient({ baseUrl: gw.url, authMode: 'session' });
    const refused = await anonymous.listClusters().catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 401, unauthenticated: true });
    const unreachable = await new GatewayClient({ baseUrl: 'http://127.0.0.1:9/', authMode: 'session' }).listClusters().catch((e: unknown) => e);
    expect(unreachable).toMatchObject({ status: 0, code: 'unreachable', message: expect.stringContaining('cannot be reached') });
  });

  it('reports that a simple-auth gateway holds no token', async () => {
    const model = new TokenModel(new GatewaySession(clientFor('erin')), 600);
    await model.reload();
    // signed in by user name (Basic): nothing to log in to or renew, and the panel says why
    expect(model.view).toMatchObject({ health: 'not-managed', headline: expect.stringContaining('tokens are not managed here') });
    expect(model.canRefresh).toBe(false);
    const unauth = new TokenModel(new GatewaySession(new GatewayClient({ baseUrl: gw.url, authMode: 'session' })), 600);
    await unauth.reload();
    expect(unauth.view.health).toBe('login-required');
  });
});

describe('ClustersModel', () => {
  it('follows a cluster made elsewhere (a notebook) and one made here through scale, adapt and shutdown', async () => {
    const session = new GatewaySession(clientFor('frank'), undefined, { socketFactory: socketsFor('frank') });
    const model = new ClustersModel(session);
    await session.start();
    expect(session.login).toBe('logged-in');
    await model.start();
    expect(model.connection).toBe('connected');
    try {
      // A cluster created by another client (as a notebook would) appears from the event stream.
      const elsewhere = await clientFor('frank').createCluster({});
      const clustersNow = () => `clusters: ${JSON.stringify(model.list.map((c) => [c.name, c.status, c.workers.running]))}`;
      await until(model.changed, () => model.get(elsewhere)?.status === 'RUNNING', clustersNow);

      const name = await model.create({ worker_cores: 2 });
      await until(model.changed, () => model.get(name)?.status === 'RUNNING', clustersNow);
      expect(await model.scale(name, { mode: 'manual', workers: 2, minimum: 0, maximum: 0 })).toBeNull();
      await until(model.changed, () => model.get(name)?.workers.running === 2, clustersNow);
      expect(model.get(name)).toMatchObject({ worker_cores: 2, workers: { requested: 2, running: 2 } });

      await expect(model.scale(name, { mode: 'adaptive', workers: 0, minimum: 3, maximum: 1 })).rejects.toThrow('Minimum must not be larger than maximum');
      expect(await model.scale(name, { mode: 'adaptive', workers: 0, minimum: 1, maximum: 3 })).toBeNull();
      await until(model.changed, () => model.get(name)?.adaptive?.maximum === 3, clustersNow);

      await model.stop(name);
      await model.stop(elsewhere);
      await until(model.changed, () => model.list.length === 0, clustersNow);
    } finally {
      model.dispose();
      session.dispose();
    }
  }, 120_000);

  it("does not see other users' clusters", async () => {
    const session = new GatewaySession(clientFor('gina'), undefined, { socketFactory: socketsFor('gina') });
    const mine = new ClustersModel(session);
    await session.start();
    await mine.start();
    const name = await clientFor('hank').createCluster({});
    try {
      await new Promise((r) => setTimeout(r, 1500));
      expect(mine.get(name)).toBeUndefined();
    } finally {
      mine.dispose();
      session.dispose();
      await clientFor('hank').stopCluster(name);
    }
  });
});
