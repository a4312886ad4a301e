import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile, parseListen, resolveConfig } from '../src/config.js';

describe('config', () => {
  it('fills every default for an empty document', () => {
    const c = resolveConfig({}, '/srv');
    expect(c.listen).toBe('127.0.0.1:8000');
    expect(c.data_dir).toBe('/srv/af-gateway-data');
    expect(c.auth).toMatchObject({ type: 'simple', simple: { password: null }, session_max_age: 86400 });
    expect(c.backend.local).toMatchObject({ prefork: true, nanny: false, stop_grace_period: 5 });
    expect(c.cluster).toMatchObject({ max_workers: 1000, start_timeout: 60, heartbeat_period: 10, stop_on_shutdown: true });
    expect(c.cluster_options.map((o) => o.field)).toEqual(['worker_cores', 'worker_memory', 'environment']);
  });

  it('names unknown keys and wrong types', () => {
    expect(() => resolveConfig({ cluster: { max_worker: 3 } })).toThrow(/cluster: unknown key "max_worker"/);
    expect(() => resolveConfig({ cluster: { start_timeout: 'soon' } })).toThrow(/cluster\.start_timeout: must be number/);
    expect(() => resolveConfig({ auth: { type: 'ldap' } })).toThrow(/auth\.type: must be one of "simple", "jupyterhub"/);
    expect(() => resolveConfig({ auth: { type: 'ldap' } })).toThrow(ConfigError);
  });

  it('parses listen addresses', () => {
    expect(parseListen('0.0.0.0:8000')).toEqual({ host: '0.0.0.0', port: 8000 });
    expect(parseListen('[::1]:9')).toEqual({ host: '::1', port: 9 });
    expect(() => parseListen('8000')).toThrow(/HOST:PORT/);
  });
});

describe('the embedded default (no --config)', () => {
  it('is one person on loopback, bounded: 10 clusters at once, 1000 workers each, 64 launches in flight', () => {
    const c = loadConfigFile(undefined);
    expect(c.backend.local.single_user).toBe(true);
    expect(c.policy.user_limits.max_clusters).toBe(10);
    expect(c.cluster).toMatchObject({ max_workers: 1000, launch_batch: 64 });
  });
});
