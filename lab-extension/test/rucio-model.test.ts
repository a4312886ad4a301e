// Pure parts of the Rucio panel: NDJSON lines cut across chunks, the replica/PFN merge, the
// notebook cell, the register dialog's file list, and the virtualised table's slice.
import { describe, expect, it } from 'vitest';
import { NdjsonSplitter, ndjsonRows } from '../src/api/ndjson';
import type { RucioReplica } from '@af-gateway/schemas';
import { visibleSlice } from '../src/panels/rucio/file-table-state';
import {
  applyReplicas,
  fileListCell,
  fileRow,
  firstPfn,
  formatBytes,
  indexRows,
  mergeReplica,
  parseRegisterFiles,
  pfnList,
} from '../src/panels/rucio/rucio-files';

async function* chunksOf(text: string, sizes: number[]): AsyncGenerator<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield bytes.slice(at, at + n);
    at += n;
  }
}

const replica = (name: string, pfns: Record<string, [string, number]>): RucioReplica => {
  const rses: Record<string, string[]> = {};
  for (const [pfn, [rse]] of Object.entries(pfns)) (rses[rse] ??= []).push(pfn);
  return {
    scope: 'data26',
    name,
    bytes: 100,
    adler32: 'abcdef01',
    pfns: Object.fromEntries(Object.entries(pfns).map(([pfn, [rse, priority]]) => [pfn, { rse, priority }])),
    rses,
  };
};

describe('NDJSON across chunk boundaries', () => {
  it('keeps an unfinished line until the rest arrives', () => {
    const s = new NdjsonSplitter();
    expect(s.push('{"a":1}\n{"a"')).toEqual(['{"a":1}']);
    expect(s.push(':2}')).toEqual([]);
    expect(s.push('\n\n{"a":3}')).toEqual(['{"a":2}']);
    expect(s.flush()).toEqual(['{"a":3}']);
    expect(s.flush()).toEqual([]);
  });

  it('parses every row whatever the chunk sizes, multi-byte characters included', async () => {
    const rows = Array.from({ length: 300 }, (_, i) => ({ scope: 'data26', name: `file.${i}.ü€.root`, bytes: i }));
    const text = rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
    for (const sizes of [[1], [7, 3, 64], [4096], [text.length + 10]]) {
      const got = [];
      for await (const r of ndjsonRows(chunksOf(text, sizes))) got.push(r);
      expect(got).toEqual(rows);
    }
    // no trailing newline
    const got = [];
    for await (const r of ndjsonRows(chunksOf('{"x":1}\n{"x":2}', [5]))) got.push(r);
    expect(got).toEqual([{ x: 1 }, { x: 2 }]);
  });
});

describe('file rows merged with replicas', () => {
  it('takes the first PFN of the scheme by priority and lists the RSEs', () => {
    const r = replica('f1', {
      'davs://b.test:443/data/f1': ['SITE-B_DISK', 2],
      'davs://a.test:443/data/f1': ['SITE-A_DISK', 1],
      'root://a.test:1094//data/f1': ['SITE-A_DISK', 3],
    });
    expect(firstPfn(r, 'davs')).toBe('davs://a.test:443/data/f1');
    expect(firstPfn(r, 'root')).toBe('root://a.test:1094//data/f1');
    expect(firstPfn(r, 'https')).toBe('');
    const row = mergeReplica(fileRow({ scope: 'data26', name: 'f1', bytes: 100, adler32: 'abcdef01' }), r, 'davs');
    expect(row).toEqual({
      scope: 'data26',
      name: 'f1',
      bytes: 100,
      adler32: 'abcdef01',
      rses: ['SITE-A_DISK', 'SITE-B_DISK'],
      pfn: 'davs://a.test:443/data/f1',
    });
  });

  it('merges replicas arriving in any order, adds files it did not know, counts files without a PFN', () => {
    const rows = ['f1', 'f2', 'f3'].map((name) => fileRow({ scope: 'data26', name, bytes: 1, adler32: '00000001' }));
    const index = indexRows(rows);
    applyReplicas(
      rows,
      index,
      [replica('f3', { 'root://x//f3': ['X', 1] }), replica('f1', { 'root://x//f1': ['X', 1] }), replica('f9', { 'root://x//f9': ['X', 1] })],
      'root',
    );
    expect(rows.map((r) => [r.name, r.pfn])).toEqual([
      ['f1', 'root://x//f1'],
      ['f2', ''],
      ['f3', 'root://x//f3'],
      ['f9', 'root://x//f9'],
    ]);
    expect(index.get('data26:f9')).toBe(3);
    expect(pfnList(rows)).toEqual({ pfns: ['root://x//f1', 'root://x//f3', 'root://x//f9'], missing: 1 });
  });

  it('says sizes as people read them', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(25_889_814)).toBe('25.9 MB');
    expect(formatBytes(110_256_582_563)).toBe('110 GB');
    expect(formatBytes(null)).toBe('—');
  });
});

describe('the notebook cell', () => {
  it('defines files as a Python list literal, one PFN a line', () => {
    const cell = fileListCell(['davs://a.test:443/data/f1', 'root://a.test:1094//data/"q".root'], 'data26:ds.small', 'davs');
    expect(cell).toBe(
      '# 2 files of data26:ds.small (davs, first replica of each), from the AF Gateway Rucio panel\n' +
        'files = [\n    "davs://a.test:443/data/f1",\n    "root://a.test:1094//data/\\"q\\".root",\n]\n',
    );
    expect(fileListCell([], 'data26:x', 'root')).toContain('files = []');
    const big = fileListCell(
      Array.from({ length: 20_000 }, (_, i) => `davs://h/f${i}`),
      'data26:ds.big',
      'davs',
    );
    expect(big.split('\n')).toHaveLength(20_000 + 4);
  });
});

describe('the files of Register outputs', () => {
  it('reads lines and JSON, and says what is wrong', () => {
    expect(parseRegisterFiles('hist.1.root 1234 0a1b2c3d\n# comment\n\nhist.2.root 5678 0F1E2D3C')).toEqual({
      files: [
        { name: 'hist.1.root', bytes: 1234, adler32: '0a1b2c3d' },
        { name: 'hist.2.root', bytes: 5678, adler32: '0F1E2D3C' },
      ],
      problem: null,
    });
    expect(parseRegisterFiles('[{"name":"a.root","bytes":1,"adler32":"00000001"}]').files).toHaveLength(1);
    expect(parseRegisterFiles('a.root 12').problem).toBe('Line 1: expected "name bytes adler32"');
    expect(parseRegisterFiles('a.root x 00000001').problem).toBe('Line 1: bytes must be a whole number');
    expect(parseRegisterFiles('a.root 1 xyz').problem).toBe('Line 1: adler32 must be 8 hex digits');
    expect(parseRegisterFiles('[{').problem).toMatch(/^Not valid JSON/);
    expect(parseRegisterFiles('  ').problem).toMatch(/List the files/);
  });
});

describe('the virtualised table', () => {
  it('renders the visible rows and a small overscan only', () => {
    expect(visibleSlice(0, 540, 20_000, 54, 6)).toEqual([0, 16]);
    expect(visibleSlice(54 * 1000, 540, 20_000, 54, 6)).toEqual([994, 1016]);
    expect(visibleSlice(54 * 19_990, 540, 20_000, 54, 6)).toEqual([19_984, 20_000]);
    expect(visibleSlice(0, 540, 3, 54, 6)).toEqual([0, 3]);
  });
});
