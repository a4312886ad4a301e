// The dataset browser's table model: sort by each column, filter, selection (click, ctrl-click,
// shift-click ranges, all matching), what the actions work on, and rows streaming in as the gateway's
// pages arrive (with a cancel), on up to 100,000 rows.
import { Signal } from '@lumino/signaling';
import { describe, expect, it } from 'vitest';
import type { RucioFile, RucioReplica } from '@af-gateway/schemas';
import { DatasetModel } from '../src/panels/rucio/dataset-model';
import { FileTableState, type RowSource } from '../src/panels/rucio/file-table-state';
import type { FileRow } from '../src/panels/rucio/rucio-files';
import type { IEventHub } from '../src/session/tokens';

const row = (name: string, bytes: number, adler32: string, rses: string[], pfn: string): FileRow => ({ scope: 'data26', name, bytes, adler32, rses, pfn });

function source(rows: FileRow[]): RowSource & { rows: FileRow[]; version: number } {
  return { rows, version: 0 };
}

const sample = () =>
  source([
    row('f.c.root', 300, '0000000c', ['SITE-B_DISK'], 'davs://b.test/f.c.root'),
    row('f.a.root', 100, '0000000a', ['SITE-A_DISK', 'SITE-B_DISK'], 'davs://a.test/f.a.root'),
    row('f.d.root', 50, '0000000d', [], ''),
    row('f.b.root', 200, '0000000b', ['SITE-A_DISK'], 'davs://a.test/f.b.root'),
  ]);
const names = (t: FileTableState, rows: FileRow[]) => Array.from({ length: t.length }, (_, p) => rows[t.rowAt(p)]!.name);

describe('the table: order', () => {
  it('sorts by each column up, then down, then back to the dataset order; ties keep the dataset order', () => {
    const src = sample();
    const t = new FileTableState(src);
    expect(names(t, src.rows)).toEqual(['f.c.root', 'f.a.root', 'f.d.root', 'f.b.root']);
    t.toggleSort('name');
    expect(names(t, src.rows)).toEqual(['f.a.root', 'f.b.root', 'f.c.root', 'f.d.root']);
    t.toggleSort('name');
    expect(t.sort).toEqual({ key: 'name', dir: -1 });
    expect(names(t, src.rows)).toEqual(['f.d.root', 'f.c.root', 'f.b.root', 'f.a.root']);
    t.toggleSort('name');
    expect(t.sort).toBeNull();
    expect(names(t, src.rows)).toEqual(['f.c.root', 'f.a.root', 'f.d.root', 'f.b.root']);
    t.setSort({ key: 'bytes', dir: 1 });
    expect(names(t, src.rows)).toEqual(['f.d.root', 'f.a.root', 'f.b.root', 'f.c.root']);
    t.setSort({ key: 'adler32', dir: -1 });
    expect(names(t, src.rows)).toEqual(['f.d.root', 'f.c.root', 'f.b.root', 'f.a.root']);
    t.setSort({ key: 'pfn', dir: 1 });
    expect(names(t, src.rows)).toEqual(['f.d.root', 'f.a.root', 'f.b.root', 'f.c.root']);
    // SITE-A_DISK twice (f.a with two RSEs sorts after f.b with one): ties and prefixes as strings do
    t.setSort({ key: 'rses', dir: 1 });
    expect(names(t, src.rows)).toEqual(['f.d.root', 'f.b.root', 'f.a.root', 'f.c.root']);
    const ties = source([row('x', 5, '', [], ''), row('y', 5, '', [], ''), row('z', 1, '', [], '')]);
    const tt = new FileTableState(ties);
    tt.setSort({ key: 'bytes', dir: -1 });
    expect(names(tt, ties.rows)).toEqual(['x', 'y', 'z']);
  });
});

describe('the table: filter', () => {
  it('keeps rows whose name, PFN, RSEs or checksum hold every word, whatever the case', () => {
    const src = sample();
    const t = new FileTableState(src);
    t.setFilter('site-a');
    expect(names(t, src.rows)).toEqual(['f.a.root', 'f.b.root']);
    t.setFilter('SITE-A   f.b');
    expect(names(t, src.rows)).toEqual(['f.b.root']);
    t.setFilter('0000000d');
    expect(names(t, src.rows)).toEqual(['f.d.root']);
    t.setFilter('nothing-like-this');
    expect(t.length).toBe(0);
    expect(t.targetRows()).toEqual([]);
    t.setFilter('  ');
    expect(t.length).toBe(4);
  });

  it('filters and sorts together; positions map back to rows', () => {
    const src = sample();
    const t = new FileTableState(src);
    t.setFilter('davs://a.test');
    t.setSort({ key: 'bytes', dir: -1 });
    expect(names(t, src.rows)).toEqual(['f.b.root', 'f.a.root']);
    expect(t.positionOf(3)).toBe(0);
    expect(t.positionOf(0)).toBe(-1);
  });
});

describe('the table: selection', () => {
  it('click selects one, ctrl-click adds and removes, shift-click selects the range shown', () => {
    const src = sample();
    const t = new FileTableState(src);
    t.toggleSort('name'); // a b c d
    t.click(0);
    expect(t.selectedRows().map((r) => r.name)).toEqual(['f.a.root']);
    t.click(2, { toggle: true });
    expect(t.selectedRows().map((r) => r.name)).toEqual(['f.a.root', 'f.c.root']);
    t.click(0, { toggle: true });
    expect(t.selectedRows().map((r) => r.name)).toEqual(['f.c.root']);
    // the range runs from the last clicked row (c, position 2) to d; again from c to a
    t.click(2);
    t.click(3, { range: true });
    expect(t.selectedRows().map((r) => r.name)).toEqual(['f.c.root', 'f.d.root']);
    t.click(0, { range: true });
    expect(t.selectedRows().map((r) => r.name)).toEqual(['f.a.root', 'f.b.root', 'f.c.root']);
    // ctrl+shift adds a range to what is selected
    t.click(3);
    t.click(3, { toggle: true });
    expect(t.selectedCount).toBe(0);
    t.click(1);
    t.click(3, { toggle: true });
    t.click(2, { range: true, toggle: true });
    expect(t.selectedRows().map((r) => r.name)).toEqual(['f.b.root', 'f.c.root', 'f.d.root']);
    // out of range: nothing happens
    t.click(99);
    expect(t.selectedCount).toBe(3);
    t.clearSelection();
    expect(t.selectedCount).toBe(0);
    // shift-click with no anchor selects just that row
    t.click(1, { range: true });
    expect(t.selectedRows().map((r) => r.name)).toEqual(['f.b.root']);
  });

  it('selects all matching the filter; the filter drops selected rows it hides; actions use the selection, else all shown', () => {
    const src = sample();
    const t = new FileTableState(src);
    expect(t.targetRows().map((r) => r.name)).toEqual(['f.c.root', 'f.a.root', 'f.d.root', 'f.b.root']);
    t.setFilter('site-a');
    expect(t.targetRows().map((r) => r.name)).toEqual(['f.a.root', 'f.b.root']);
    t.selectAllShown();
    expect(t.selectedCount).toBe(2);
    t.setFilter('');
    expect(t.selectedRows().map((r) => r.name)).toEqual(['f.a.root', 'f.b.root']);
    t.setFilter('f.b');
    expect(t.selectedRows().map((r) => r.name)).toEqual(['f.b.root']);
    t.setSort({ key: 'name', dir: -1 });
    t.setFilter('');
    t.selectAllShown();
    expect(t.targetRows().map((r) => r.name)).toEqual(['f.d.root', 'f.c.root', 'f.b.root', 'f.a.root']);
  });
});

describe('the table on 100,000 rows', () => {
  it('sorts, filters and selects all without a per-row cost that shows', () => {
    const rows = Array.from({ length: 100_000 }, (_, i) =>
      row(`file.huge.${String((i * 7919) % 100_000).padStart(6, '0')}.root`, i, i.toString(16).padStart(8, '0'), ['SITE-B_DISK'], `root://b.test//huge/${i}`),
    );
    const src = source(rows);
    const t = new FileTableState(src);
    const t0 = performance.now();
    t.setSort({ key: 'name', dir: 1 });
    expect(rows[t.rowAt(0)]!.name).toBe('file.huge.000000.root');
    expect(rows[t.rowAt(99_999)]!.name).toBe('file.huge.099999.root');
    t.setFilter('file.huge.0999');
    expect(t.length).toBe(100);
    t.selectAllShown();
    expect(t.selectedRows()).toHaveLength(100);
    // generous: a liveness bound, not a benchmark (about 0.2 s on one loaded core)
    expect(performance.now() - t0).toBeLessThan(5_000);
  });
});

// --- streaming: a fake gateway client whose NDJSON streams are released page by page -------------

/** An async stream the test feeds: push pages, then end (or fail); it honours the abort signal. */
class Feed<T> {
  private queue: T[] = [];
  private done = false;
  private wake: (() => void) | null = null;
  push(items: T[]): void {
    this.queue.push(...items);
    this.wake?.();
  }
  end(): void {
    this.done = true;
    this.wake?.();
  }
  async *stream(signal?: AbortSignal): AsyncGenerator<T> {
    for (;;) {
      if (signal?.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
      if (this.queue.length) {
        yield this.queue.shift()!;
        continue;
      }
      if (this.done) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        signal?.addEventListener('abort', () => resolve(), { once: true });
      });
      this.wake = null;
    }
  }
}

function fakeHub(files: Feed<RucioFile>, replicas: Feed<RucioReplica>): IEventHub {
  const client = {
    rucioFiles: (_i: string, _s: string, _n: string, signal?: AbortSignal) => files.stream(signal),
    rucioReplicas: (_i: string, _r: unknown, signal?: AbortSignal) => replicas.stream(signal),
  };
  return { client, loginChanged: new Signal<unknown, unknown>({}) } as unknown as IEventHub;
}

const file = (i: number): RucioFile => ({ scope: 'data26', name: `file.${String(i).padStart(6, '0')}.root`, bytes: 1000 + i, adler32: 'abcdef01' });
const replicaOf = (i: number): RucioReplica => ({
  scope: 'data26',
  name: file(i).name,
  bytes: 1000 + i,
  adler32: 'abcdef01',
  rses: { 'SITE-B_DISK': [`root://b.test//data/${i}`] },
  pfns: { [`root://b.test//data/${i}`]: { rse: 'SITE-B_DISK', priority: 1 } },
});
const tick = () => new Promise((r) => setTimeout(r, 0));

describe('the dataset streaming in', () => {
  it('shows rows as pages arrive, keeps the order, filter and selection over new pages, then merges replicas', async () => {
    const files = new Feed<RucioFile>();
    const replicas = new Feed<RucioReplica>();
    const ds = new DatasetModel(fakeHub(files, replicas), { instance: 'test', scope: 'data26', name: 'ds.big', type: 'DATASET', length: 3000 }, 'root');
    const loaded = ds.load();
    expect(ds.phase).toBe('files');
    // first page: 1,000 files in reverse name order
    files.push(Array.from({ length: 1000 }, (_, k) => file(2999 - k)));
    await tick();
    expect(ds.rows).toHaveLength(1000);
    expect(ds.length).toBe(3000);
    ds.table.setSort({ key: 'name', dir: 1 });
    expect(ds.rows[ds.table.rowAt(0)]!.name).toBe('file.002000.root');
    ds.table.setFilter('file.0029');
    expect(ds.table.length).toBe(100);
    ds.table.selectAllShown();
    // next pages: the sort takes them in, the filter and selection stand
    files.push(Array.from({ length: 2000 }, (_, k) => file(1999 - k)));
    await tick();
    expect(ds.rows).toHaveLength(3000);
    expect(ds.table.length).toBe(100);
    ds.table.setFilter('');
    expect(ds.table.length).toBe(3000);
    expect(ds.rows[ds.table.rowAt(0)]!.name).toBe('file.000000.root');
    expect(ds.table.selectedCount).toBe(100);
    files.end();
    await tick();
    expect(ds.phase).toBe('replicas');
    replicas.push(Array.from({ length: 3000 }, (_, i) => replicaOf(i)));
    replicas.end();
    await loaded;
    expect(ds.phase).toBe('done');
    expect(ds.rows.every((r) => r.pfn.startsWith('root://b.test//data/'))).toBe(true);
    // the selection survived the replicas (rows replaced in place)
    const sel = ds.table.selectedRows();
    expect(sel).toHaveLength(100);
    expect(sel[0]!.name).toBe('file.002900.root');
    expect(sel[0]!.pfn).toBe('root://b.test//data/2900');
    ds.dispose();
  });

  it('stops on cancel, keeping what arrived, and loads again on request', async () => {
    const files = new Feed<RucioFile>();
    const replicas = new Feed<RucioReplica>();
    const ds = new DatasetModel(fakeHub(files, replicas), { instance: 'test', scope: 'data26', name: 'ds.huge', type: 'DATASET', length: 100_000 }, 'davs');
    const loaded = ds.load();
    files.push(Array.from({ length: 12_000 }, (_, i) => file(i)));
    await tick();
    expect(ds.rows).toHaveLength(12_000);
    ds.cancel();
    await loaded;
    expect(ds.phase).toBe('cancelled');
    expect(ds.loading).toBe(false);
    expect(ds.rows).toHaveLength(12_000);
    // more pages after the cancel are not taken in
    files.push([file(12_000)]);
    await tick();
    expect(ds.rows).toHaveLength(12_000);
    ds.dispose();
  });
});
