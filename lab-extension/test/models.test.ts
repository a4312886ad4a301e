// Pure parts of the panel models: what the user is told and what the forms accept.
import { describe, expect, it } from 'vitest';
import type { AfCluster, AfWorkerGroup, Field, TokenStatus } from '@af-gateway/schemas';
import { describeToken, formatCountdown } from '../src/panels/tokens/token-model';
import {
  clusterGroups,
  describeOverflow,
  groupSubmitCode,
  initialOptionValues,
  parseGroupCount,
  summarise,
  summariseGroup,
  validateOption,
  validateScale,
} from '../src/panels/clusters/clusters-model';
import { formatUptime } from '../src/components/format';
import { effectiveAuthMode, normaliseSettings, resolveGatewayUrl } from '../src/api/gateway-settings';
import { connectCode } from '../src/api/connect-code';

const NOW = 1_800_000_000_000;
const token = (over: Partial<TokenStatus> = {}): TokenStatus => ({
  user: 'alice',
  source: 'login',
  subject: 'alice',
  issuer: 'http://127.0.0.1:9000',
  audience: ['af-gateway'],
  scopes: ['openid'],
  groups: ['/cms'],
  expires_at: NOW + 3600_000,
  seconds_left: 3600,
  last_refresh: NOW,
  refresh: { state: 'ok', message: '', next_at: null },
  deliveries: [],
  ...over,
});

describe('token status in plain words', () => {
  it('counts down and warns before expiry', () => {
    expect(describeToken(token(), NOW, 600)).toMatchObject({ health: 'ok', secondsLeft: 3600, headline: expect.stringContaining('renews it') });
    const soon = describeToken(token({ expires_at: NOW + 300_000 }), NOW, 600);
    expect(soon.health).toBe('warning');
    expect(soon.headline).toContain('expires soon');
    expect(soon.headline).toContain('renews it');
    expect(describeToken(token({ expires_at: NOW + 300_000, refresh: { state: 'none', message: '', next_at: null } }), NOW, 600).headline).toContain(
      'log in again',
    );
  });

  it('names each problem', () => {
    expect(describeToken(null, NOW, 600).health).toBe('loading');
    expect(describeToken(token({ source: 'none', expires_at: null }), NOW, 600)).toMatchObject({ health: 'none', headline: expect.stringContaining('Log in') });
    // a Lab signing in by user name: nothing to log in to or renew, and the panel says why
    expect(describeToken(token({ source: 'none', expires_at: null }), NOW, 600, false)).toMatchObject({
      health: 'not-managed',
      headline: expect.stringContaining('tokens are not managed here'),
    });
    const noRefresh = { refresh: { state: 'none' as const, message: '', next_at: null } };
    for (const t of [token({ expires_at: NOW - 1000, ...noRefresh }), token({ expires_at: NOW + 300_000, ...noRefresh }), token(noRefresh)]) {
      expect(describeToken(t, NOW, 600, false).headline).not.toMatch(/log in/i);
      expect(describeToken(t, NOW, 600, true).headline).toMatch(/log in/i);
    }
    expect(describeToken(token({ expires_at: NOW - 1000 }), NOW, 600).health).toBe('expired');
    const failing = describeToken(token({ refresh: { state: 'failing', message: 'provider unreachable', next_at: null } }), NOW, 600);
    expect(failing).toMatchObject({ health: 'refresh-failed', headline: expect.stringContaining('provider unreachable') });
    expect(describeToken(token({ refresh: { state: 'revoked', message: 'invalid_grant.', next_at: null } }), NOW, 600).headline).toContain('Log in again');
  });

  it('formats durations', () => {
    expect(formatCountdown(3725)).toBe('1h 02m 05s');
    expect(formatCountdown(65)).toBe('1m 05s');
    expect(formatCountdown(9)).toBe('9s');
    expect(formatUptime(42_000)).toBe('42s');
    expect(formatUptime(3 * 3600_000 + 60_000)).toBe('3h 1m');
  });
});

describe('cluster forms', () => {
  it('enforces minimum <= maximum and whole numbers', () => {
    expect(validateScale({ mode: 'manual', workers: 2, minimum: 5, maximum: 1 })).toBeNull();
    expect(validateScale({ mode: 'manual', workers: 1.5, minimum: 0, maximum: 0 })).toMatch(/whole number/);
    expect(validateScale({ mode: 'adaptive', workers: 0, minimum: 3, maximum: 2 })).toBe('Minimum must not be larger than maximum');
    expect(validateScale({ mode: 'adaptive', workers: 0, minimum: 1, maximum: 4 })).toBeNull();
    expect(validateScale({ mode: 'adaptive', workers: 0, minimum: Number.NaN, maximum: 4 })).toMatch(/whole numbers/);
  });

  const fields: Field[] = [
    { field: 'worker_cores', label: 'Worker cores', default: 1, spec: { type: 'int', min: 1, max: 4 } },
    { field: 'profile', label: 'Profile', default: 'small', spec: { type: 'select', options: ['small', 'large'] } },
  ];

  it('validates option values against the spec', () => {
    expect(validateOption(fields[0]!, 5)).toBe('Worker cores must be at most 4');
    expect(validateOption(fields[0]!, 1.5)).toBe('Worker cores must be a whole number');
    expect(validateOption(fields[1]!, 'huge')).toMatch(/choose one of small, large/);
  });

  it('starts the form from the user defaults that fit, else the gateway defaults', () => {
    expect(initialOptionValues(fields, { worker_cores: 3, profile: 'huge' })).toEqual({ worker_cores: 3, profile: 'small' });
  });

  it('summarises workers, cores, memory and progress', () => {
    const c: AfCluster = {
      name: 'c1',
      display_name: '',
      owner: 'alice',
      status: 'RUNNING',
      message: '',
      options: {},
      dashboard_route: null,
      start_time: NOW,
      stop_time: null,
      worker_cores: 2,
      worker_memory: 1.5,
      adaptive: { minimum: 1, maximum: 4 },
      workers: { requested: 3, starting: 1, running: 2, failed: 0, list: [] },
    };
    expect(summarise(c)).toMatchObject({
      connected: 2,
      requested: 3,
      cores: 4,
      memoryGiB: 3,
      adaptive: { minimum: 1, maximum: 4 },
      progress: { label: 'Workers joining: 2 of 3', done: 2, total: 3 },
    });
    expect(summarise({ ...c, status: 'PENDING' }).progress?.label).toBe('Starting the scheduler…');
    const waiting = {
      ...c,
      workers: { ...c.workers, list: [{ name: 'w1', status: 'STARTING' as const, message: 'HTCondor job 7.0 is waiting for a slot', start_time: NOW }] },
    };
    expect(summarise(waiting).note).toBe('HTCondor job 7.0 is waiting for a slot');
    expect(summarise({ ...c, message: 'worker w2 failed: held' }).note).toBe('worker w2 failed: held');
  });
});

describe('worker groups on a cluster card', () => {
  const group = (over: Partial<AfWorkerGroup> = {}): AfWorkerGroup => ({
    name: 'hpc',
    description: 'Slurm nodes with 64 cores',
    backend: 'slurm',
    worker_cores: 4,
    worker_memory: 16,
    resources: { hpc: 1 },
    max_workers: 10,
    target: 0,
    starting: 0,
    running: 0,
    pending: 0,
    pending_reasons: [],
    message: '',
    ...over,
  });
  const defaultGroup = group({
    name: 'default',
    description: 'The workers the dask-gateway client scales',
    backend: 'local',
    worker_cores: 2,
    worker_memory: 1.5,
    resources: {},
    max_workers: null,
  });
  const cluster = (groups: AfWorkerGroup[] | undefined, running = 0): AfCluster => ({
    name: 'c1',
    display_name: '',
    owner: 'alice',
    status: 'RUNNING',
    message: '',
    options: {},
    dashboard_route: null,
    start_time: NOW,
    stop_time: null,
    worker_cores: 2,
    worker_memory: 1.5,
    adaptive: null,
    ...(groups ? { groups } : {}),
    workers: { requested: groups?.[0]?.target ?? 0, starting: 0, running, failed: 0, list: [] },
  });

  it('is hidden unless the gateway has groups besides default', () => {
    expect(clusterGroups(cluster(undefined))).toEqual([]);
    expect(clusterGroups(cluster([defaultGroup]))).toEqual([]);
    expect(clusterGroups(cluster([defaultGroup, group()])).map((g) => g.name)).toEqual(['default', 'hpc']);
  });

  it('says where, how big, what label and how many, and why workers wait', () => {
    const g = summariseGroup(
      group({
        target: 3,
        running: 1,
        starting: 2,
        pending: 1,
        pending_reasons: ['Slurm job 42 is pending: waiting for resources (Resources)'],
      }),
    );
    expect(g).toMatchObject({
      backend: 'Slurm',
      size: '4 cores · 16 GiB',
      resources: [{ label: 'hpc', amount: 1 }],
      limit: 10,
      counts: '1 of 3 running, 1 starting, 1 waiting for a slot',
      pendingReasons: ['Slurm job 42 is pending: waiting for resources (Resources)'],
      overflow: '',
    });
    expect(summariseGroup(defaultGroup)).toMatchObject({ backend: 'local processes', size: '2 cores · 1.5 GiB', resources: [], counts: '0 of 0 running' });
    expect(summariseGroup(group({ worker_cores: 1, worker_memory: 1 })).size).toBe('1 core · 1 GiB');
    expect(summariseGroup(group({ backend: 'futuristic' })).backend).toBe('futuristic');
  });

  it('counts every group in the whole cluster', () => {
    const s = summarise(cluster([{ ...defaultGroup, target: 2, running: 2 }, group({ target: 1, running: 1 })], 3));
    expect(s).toMatchObject({ requested: 3, connected: 3, cores: 2 * 2 + 4, memoryGiB: 2 * 1.5 + 16, progress: null });
    expect(summarise(cluster([{ ...defaultGroup, target: 0 }, group({ target: 2, running: 1 })], 1)).progress?.label).toBe('Workers joining: 1 of 2');
  });

  it('accepts whole counts only', () => {
    expect(parseGroupCount(' 5 ')).toEqual({ count: 5 });
    expect(parseGroupCount('0')).toEqual({ count: 0 });
    for (const bad of ['', '-1', '1.5', 'two', '1e3']) expect(parseGroupCount(bad)).toEqual({ problem: 'Workers must be a whole number, 0 or more' });
    expect(parseGroupCount('9'.repeat(30))).toEqual({ problem: 'That is too many workers' });
  });

  it('shows how a notebook reaches the group', () => {
    expect(groupSubmitCode(summariseGroup(group()))).toBe('client.submit(f, resources={"hpc": 1})');
    expect(groupSubmitCode(summariseGroup(group({ resources: { gpu: 0.5 } })))).toBe('client.submit(f, resources={"gpu": 0.5})');
    expect(groupSubmitCode(summariseGroup(defaultGroup))).toBe('');
  });

  it('renders overflow information when a gateway sends it', () => {
    expect(describeOverflow(undefined)).toBe('');
    expect(describeOverflow('hpc')).toBe('Overflows to hpc when its workers wait for a slot');
    expect(describeOverflow({ group: 'hpc', after_seconds: 300, workers: 2 })).toBe('Overflows to hpc after 300 s waiting for a slot; 2 workers there now');
    expect(describeOverflow({ group: 'hpc', message: 'handing 1 worker back' })).toBe(
      'Overflows to hpc when its workers wait for a slot; handing 1 worker back',
    );
    // the form af-worker-group.json gives it: {group, after, workers}; null is no overflow
    expect(describeOverflow({ group: 'hpc', after: 120, workers: 1 })).toBe('Overflows to hpc after 120 s waiting for a slot; 1 worker there now');
    expect(describeOverflow({ group: 'hpc', after: 120, workers: 0 })).toBe('Overflows to hpc after 120 s waiting for a slot');
    expect(describeOverflow(null)).toBe('');
    expect(describeOverflow(42)).toBe('');
    expect(summariseGroup(group({ name: 'default', overflow: { group: 'hpc', after: 60, workers: 2 } })).overflow).toBe(
      'Overflows to hpc after 60 s waiting for a slot; 2 workers there now',
    );
  });
});

describe('where the gateway is', () => {
  const page = { origin: 'https://af.example.org', baseUrl: '/user/alice/', hubPrefix: '/hub/' };
  it('defaults to the Hub service path', () => {
    expect(resolveGatewayUrl('', page)).toBe('https://af.example.org/services/af-gateway/');
    expect(resolveGatewayUrl('', { ...page, hubPrefix: '/jhub/hub/' })).toBe('https://af.example.org/jhub/services/af-gateway/');
    expect(resolveGatewayUrl('', { ...page, hubPrefix: '' })).toBe('https://af.example.org/services/af-gateway/');
  });
  it('accepts full URLs, absolute and server-relative paths', () => {
    expect(resolveGatewayUrl('http://gw:8000', page)).toBe('http://gw:8000/');
    expect(resolveGatewayUrl('/gw', page)).toBe('https://af.example.org/gw/');
    expect(resolveGatewayUrl('proxy/8000/', page)).toBe('https://af.example.org/user/alice/proxy/8000/');
  });
  it('picks the Hub login behind a Hub', () => {
    expect(effectiveAuthMode('auto', page)).toBe('jupyterhub');
    expect(effectiveAuthMode('auto', { ...page, hubPrefix: '' })).toBe('session');
    expect(normaliseSettings({ authMode: 'bogus' as never, tokenWarningMinutes: -1 })).toMatchObject({ authMode: 'auto', tokenWarningMinutes: 10 });
  });
});

describe('connect code', () => {
  it('configures address, proxy and auth for each gateway auth type', () => {
    const basic = connectCode({ address: 'http://127.0.0.1:8000', proxy_address: 'gateway://127.0.0.1:8000', auth: 'basic', username: 'o"brien' }, 'abc');
    expect(basic).toContain('from dask_gateway.auth import BasicAuth');
    expect(basic).toContain('auth=BasicAuth(username="o\\"brien"),');
    expect(basic).toContain('cluster = gateway.connect("abc")');
    expect(basic).toContain('client = cluster.get_client()');
    expect(connectCode({ address: 'a', proxy_address: 'p', auth: 'jupyterhub', username: 'x' }, 'c')).toContain('auth="jupyterhub",');
    expect(basic).not.toContain('public_address');
    const behindHub = connectCode(
      { address: 'http://gw:8000', proxy_address: 'gateway://gw:8000', auth: 'jupyterhub', username: 'x' },
      'c',
      'https://hub.example.org/services/af-gateway',
    );
    expect(behindHub).toContain('    public_address="https://hub.example.org/services/af-gateway",\n');
    expect(connectCode({ address: 'a', proxy_address: 'p', auth: 'bearer', username: 'x' }, 'c')).toContain('auth=BearerTokenAuth(),');
  });
});
