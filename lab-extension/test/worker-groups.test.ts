// Worker groups as the cluster card uses them, against a real gateway (local backend, real Dask):
// the event stream brings each group's counts, scaling a group moves its workers, a count past the
// group's limit is refused with the gateway's message and changes nothing, an adaptive range past it
// is capped with a message, and a count turns adaptive scaling off.
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../src/api/gateway-client';
import { clusterGroups, ClustersModel, summariseGroup } from '../src/panels/clusters/clusters-model';
import { GatewaySession } from '../src/session/gateway-session';
import { useRealGateway } from './real-gateway';
import { until } from './until';

const gw = useRealGateway('af-lab-groups-', {
  worker_groups: [{ name: 'big', description: 'Heavy steps', worker_cores: 1, worker_memory: 1, resources: { big: 1 }, max_workers: 2 }],
});

describe('worker groups in the Clusters model', () => {
  it('shows, scales and refuses past a limit, live from the event stream', async () => {
    const session = new GatewaySession(gw.clientFor('ivy'), undefined, { socketFactory: gw.socketsFor('ivy') });
    const model = new ClustersModel(session);
    await session.start();
    await model.start();
    let name = '';
    const groupsNow = () => `groups: ${JSON.stringify(model.get(name)?.groups?.map((g) => [g.name, g.target, g.starting, g.running]))}`;
    const big = () => model.get(name)?.groups?.find((g) => g.name === 'big');
    try {
      name = await model.create({});
      await until(model.changed, () => model.get(name)?.status === 'RUNNING', groupsNow);
      expect(clusterGroups(model.get(name)!).map((g) => [g.name, g.backend, g.size, g.resources])).toEqual([
        ['default', 'local processes', expect.stringMatching(/ GiB$/), []],
        ['big', 'local processes', '1 core · 1 GiB', [{ label: 'big', amount: 1 }]],
      ]);

      await model.scaleGroup(name, 'big', 1);
      expect(big()?.target).toBe(1); // at once, from the answer or the stream
      await until(model.changed, () => big()?.running === 1, groupsNow);
      expect(
        model
          .get(name)
          ?.workers.list.filter((w) => w.status === 'RUNNING')
          .map((w) => w.group),
      ).toEqual(['big']);

      const refused = await model.scaleGroup(name, 'big', 5).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(GatewayError);
      expect(refused).toMatchObject({ status: 422, code: 'limit_workers', message: expect.stringContaining('at most 2') });
      expect(big()?.target).toBe(1);
      await expect(model.scaleGroup(name, 'nope', 1)).rejects.toMatchObject({ status: 404 });

      // adaptive: a range past the group's limit is capped, and the group's message says so
      const adapted = await model.adaptGroup(name, 'big', 1, 5);
      expect(adapted.adaptive).toEqual({ minimum: 1, maximum: 2 });
      expect(adapted.message).toMatch(/using minimum=1, maximum=2 instead/);
      expect(summariseGroup(big()!)).toMatchObject({ mode: 'adaptive 1–2, now 1', message: adapted.message });
      await expect(model.adaptGroup(name, 'big', 3, 1)).rejects.toMatchObject({ status: 422, message: expect.stringContaining('must not be larger') });
      await expect(model.adaptGroup(name, 'nope', 0, 1)).rejects.toMatchObject({ status: 404 });
      // another user's cluster is not theirs to adapt
      await expect(gw.clientFor('mallory').adaptGroup(name, 'big', 0, 2)).rejects.toMatchObject({ status: 403 });
      expect(summariseGroup(big()!).mode).toBe('adaptive 1–2, now 1');

      // a count turns adaptive scaling off
      await model.scaleGroup(name, 'big', 0);
      expect(summariseGroup(big()!).mode).toBe('manual');
      await until(model.changed, () => big()?.running === 0 && big()?.starting === 0, groupsNow);
      expect(big()?.target).toBe(0);
      expect(big()?.adaptive ?? null).toBeNull();
    } finally {
      if (name) await model.stop(name).catch(() => undefined);
      await until(model.changed, () => model.list.length === 0, groupsNow).catch(() => undefined);
      model.dispose();
      session.dispose();
    }
  }, 120_000);
});
