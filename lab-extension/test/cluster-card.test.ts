// What a cluster card says about a cluster's name and each worker group's scaling, and what its
// controls accept before anything is sent.
import type { AfCluster, AfWorkerGroup, Field } from '@af-gateway/schemas';
import { describe, expect, it } from 'vitest';
import {
  clusterLabel,
  describeGroupMode,
  parseAdaptRange,
  summarise,
  summariseGroup,
  validateDisplayName,
  validateOption,
} from '../src/panels/clusters/clusters-model';

const ID = '0123456789abcdef0123456789abcdef';

const group = (over: Partial<AfWorkerGroup> = {}): AfWorkerGroup => ({
  name: 'big',
  description: '',
  backend: 'local',
  worker_cores: 1,
  worker_memory: 1,
  resources: { big: 1 },
  max_workers: 2,
  target: 0,
  starting: 0,
  running: 0,
  pending: 0,
  pending_reasons: [],
  message: '',
  ...over,
});

const cluster = (over: Partial<AfCluster> = {}): AfCluster => ({
  name: ID,
  display_name: '',
  owner: 'alice',
  status: 'RUNNING',
  message: '',
  options: {},
  dashboard_route: null,
  start_time: 0,
  stop_time: null,
  worker_cores: 1,
  worker_memory: 1,
  adaptive: null,
  workers: { requested: 0, starting: 0, running: 0, failed: 0, list: [] },
  ...over,
});

describe("a worker group's scaling in the card", () => {
  it('says manual, or adaptive with its range and the workers it wants now', () => {
    expect(summariseGroup(group({ target: 1 }))).toMatchObject({ adaptive: null, mode: 'manual' });
    expect(summariseGroup(group({ target: 2, adaptive: { minimum: 0, maximum: 4 } }))).toMatchObject({
      adaptive: { minimum: 0, maximum: 4 },
      mode: 'adaptive 0–4, now 2',
    });
    // no minimum is 0; no maximum is as many as the limits allow
    expect(summariseGroup(group({ target: 3, adaptive: { minimum: null, maximum: null } })).mode).toBe('adaptive 0–∞, now 3');
    expect(describeGroupMode({ minimum: 1, maximum: 1 }, 1)).toBe('adaptive 1–1, now 1');
  });

  it('takes a range of whole numbers, an empty maximum meaning none', () => {
    expect(parseAdaptRange('1', '3')).toEqual({ minimum: 1, maximum: 3 });
    expect(parseAdaptRange(' 0 ', '')).toEqual({ minimum: 0, maximum: null });
    expect(parseAdaptRange('', '2')).toEqual({ minimum: 0, maximum: 2 });
    expect(parseAdaptRange('2', '2')).toEqual({ minimum: 2, maximum: 2 });
  });

  it('refuses, in words, what the gateway would refuse', () => {
    expect(parseAdaptRange('3', '1')).toEqual({ problem: 'Minimum must not be larger than maximum' });
    for (const [lo, hi] of [
      ['-1', '2'],
      ['1.5', '2'],
      ['one', '2'],
      ['0', 'lots'],
      ['0', '1e3'],
      ['9'.repeat(30), ''],
    ])
      expect(parseAdaptRange(lo!, hi!)).toEqual({ problem: 'Minimum and maximum must be whole numbers, 0 or more' });
  });
});

describe("a cluster's name", () => {
  it('is shown with the id kept as the key', () => {
    expect(summarise(cluster({ display_name: 'ttbar skim' }))).toMatchObject({ name: ID, displayName: 'ttbar skim' });
    // a gateway from before names sends none
    const old = cluster();
    delete (old as Partial<AfCluster>).display_name;
    expect(summarise(old).displayName).toBe('');
  });

  it('labels tabs and titles by the name, else the start of the id', () => {
    expect(clusterLabel(cluster({ display_name: '<img src=x onerror=alert(1)>' }), ID)).toBe('<img src=x onerror=alert(1)>');
    expect(clusterLabel(cluster(), ID)).toBe('01234567');
    expect(clusterLabel(undefined, ID)).toBe('01234567'); // a restored tab before the list arrived
  });

  it("is checked in the form by the gateway's rule", () => {
    const field: Field = { field: 'display_name', label: 'Name', default: '', spec: { type: 'string' } };
    expect(validateOption(field, '  ttbar skim, 2018 ')).toBeNull();
    expect(validateOption(field, '')).toBeNull();
    expect(validateOption(field, 'Λ_b → J/ψ Λ 🚀')).toBeNull();
    expect(validateOption(field, '<b>bold</b>')).toBeNull(); // text, shown as text
    expect(validateOption(field, 'x'.repeat(64))).toBeNull();
    expect(validateOption(field, ` ${'x'.repeat(64)} `)).toBeNull(); // trimmed first
    expect(validateOption(field, 'x'.repeat(65))).toBe('Name is 65 characters long; at most 64');
    expect(validateOption(field, 'two\nlines')).toMatch(/^Name contains U\+000A, which is not a printable character/);
    expect(validateDisplayName('Name', 'abc\u202Etxt')).toMatch(/^Name contains U\+202E, which is not a printable character/);
    expect(validateDisplayName('Name', 'a\u200Bb')).toContain('U+200B');
    // what the gateway refuses beyond unprintable characters, refused here too before sending
    expect(validateDisplayName('Name', '\u3164')).toBe('Name contains U+3164, which shows as blank space');
    expect(validateDisplayName('Name', '\u0301abc')).toMatch(/^Name begins with a combining mark/);
    expect(validateDisplayName('Name', 'a\u0301\u0302\u0303\u0304\u0305')).toMatch(/^Name has more than 4 combining marks in a row/);
    expect(validateDisplayName('Name', 'Phở bò')).toBeNull();
    // another string option is not a name
    expect(validateOption({ ...field, field: 'note' }, 'two\nlines')).toBeNull();
  });
});
