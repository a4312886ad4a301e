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

describe('the environment', () => {
  const env = {
    AF_GATEWAY_DATABASE_URL: 'postgresql://from-env/af',
    AF_GATEWAY_ENCRYPT_KEY: 'a2V5LWZyb20tZW52',
    AF_GATEWAY_OIDC_CLIENT_SECRET: 'from-env',
    JUPYTERHUB_API_URL: 'http://hub:8081/hub/api',
    JUPYTERHUB_API_TOKEN: 'hub-token',
    JUPYTERHUB_CLIENT_ID: 'service-af',
    JUPYTERHUB_SERVICE_PREFIX: '/services/af/',
    JUPYTERHUB_BASE_URL: '/jh',
    AF_GATEWAY_RUCIO_PASSWORD_MY_RUCIO: 'pw-from-env',
  };

  it("is applied once, when the config is resolved: secrets over the file, the Hub's variables where the file is silent", () => {
    const c = resolveConfig(
      {
        state_store: { postgresql_url: 'postgresql://from-file/af' },
        auth: { jupyterhub: { api_url: 'http://from-file/hub/api' } },
        rucio: {
          instances: [
            { name: 'my-rucio', url: 'https://rucio.example' },
            { name: 'other', url: 'https://r2.example', password: 'file' },
          ],
        },
      },
      '/srv',
      env,
    );
    expect(c.state_store.postgresql_url).toBe('postgresql://from-env/af');
    expect(c.encrypt_key).toBe('a2V5LWZyb20tZW52');
    expect(c.auth.oidc.client_secret).toBe('from-env');
    expect(c.auth.jupyterhub).toMatchObject({
      api_url: 'http://from-file/hub/api',
      api_token: 'hub-token',
      client_id: 'service-af',
      authorize_url: '/jh/hub/api/oauth2/authorize',
    });
    expect(c.base_path).toBe('/services/af/');
    expect(c.rucio.instances.map((i) => i.password)).toEqual(['pw-from-env', 'file']);
  });

  it('leaves the config alone when it says nothing', () => {
    const c = resolveConfig({}, '/srv', {});
    expect(c.state_store.postgresql_url).toBeNull();
    expect(c.auth.jupyterhub.api_url).toBeNull();
    expect(c.auth.jupyterhub.authorize_url).toBe('/hub/api/oauth2/authorize');
  });
});
