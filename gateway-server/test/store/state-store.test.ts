import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { SecretBox } from '../../src/store/crypto.js';
import { StateStore } from '../../src/store/state-store.js';
import type { ClusterRecord } from '../../src/clusters/model.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'af-store-'));
  dirs.push(d);
  return d;
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

const cluster = (over: Partial<ClusterRecord> = {}): ClusterRecord => ({
  name: 'c1', username: 'alice', groups: ['/cms'], options: { worker_cores: 1 }, adaptive: { minimum: 0, maximum: 3 },
  settings: { worker_cores: 1, worker_memory: 1, environment: {}, idle_timeout: 0 },
  status: 'RUNNING', stopRequested: false, token: 'TOKEN-SECRET-123', tlsCert: 'CERT', tlsKey: 'KEY-SECRET-456',
  scheduler: { pid: 1, startTicks: '2' }, schedulerAddress: 'tls://127.0.0.1:1', dashboardAddress: '', apiAddress: '',
  count: 2, startTime: 1000, stopTime: null, lastHeartbeat: null, message: '', workerFailures: 0, workDir: '/x',
  ...over,
});

describe('StateStore', () => {
  it('round-trips clusters and workers, sealing secrets on disk', () => {
    const dir = tmp();
    const box = SecretBox.fromBase64(randomBytes(32).toString('base64'));
    const file = join(dir, 'state.sqlite');
    const store = new StateStore(file, box);
    store.saveCluster(cluster());
    store.saveWorker({ cluster: 'c1', name: 'w1', status: 'RUNNING', handle: { pid: 5, startTicks: '6' }, startTime: 1, stopTime: null, closeExpected: false, message: '' });
    store.close();

    const raw = readFileSync(file).toString('latin1') + readFileSync(file + '-wal', { flag: 'a+' }).toString('latin1');
    expect(raw).not.toContain('TOKEN-SECRET-123');
    expect(raw).not.toContain('KEY-SECRET-456');

    const again = new StateStore(file, box);
    expect(again.loadCluster('c1')).toEqual(cluster());
    expect(again.loadClusters(['RUNNING'], 'alice').map((c) => c.name)).toEqual(['c1']);
    expect(again.loadClusters(['RUNNING'], 'bob')).toEqual([]);
    expect(again.loadWorkers('c1')[0]).toMatchObject({ name: 'w1', status: 'RUNNING', handle: { pid: 5 } });
    again.close();
  });

  it('cannot read secrets with another key', () => {
    const dir = tmp();
    const file = join(dir, 'state.sqlite');
    const a = new StateStore(file, SecretBox.fromBase64(randomBytes(32).toString('base64')));
    a.saveCluster(cluster());
    a.close();
    const b = new StateStore(file, SecretBox.fromBase64(randomBytes(32).toString('base64')));
    expect(() => b.loadCluster('c1')).toThrow();
    b.close();
  });

  it('generates a key file readable only by its owner when none is configured', () => {
    const dir = tmp();
    const box = SecretBox.load(null, dir);
    expect(statSync(join(dir, 'encrypt.key')).mode & 0o777).toBe(0o600);
    expect(SecretBox.load(null, dir).open(box.seal('x'))).toBe('x');
  });

  it('expires sessions', () => {
    const store = new StateStore(join(tmp(), 's.sqlite'), SecretBox.fromBase64(randomBytes(32).toString('base64')));
    store.saveSession('h1', '{"name":"alice"}', 2000);
    expect(store.findSession('h1', 1000)).toBe('{"name":"alice"}');
    expect(store.findSession('h1', 3000)).toBeUndefined();
    store.close();
  });
});
