// Rucio's names, RSEs, checksums and PFNs are untrusted text: rendered by the dataset browser's
// table they must stay text (no element, attribute or link from them) and no PFN becomes a link.
import React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it, vi } from 'vitest';
import { FileTable } from '../src/panels/rucio/file-table';
import { FileTableState } from '../src/panels/rucio/file-table-state';
import type { FileRow } from '../src/panels/rucio/rucio-files';

// (the icon set needs a browser; the icon is not what is tested)
vi.mock('@jupyterlab/ui-components', () => ({ copyIcon: { react: () => null } }));

const trans = { __: (s: string, ...args: unknown[]) => args.reduce<string>((t, a, i) => t.replace(`%${i + 1}`, String(a)), s) } as never;

describe('the file table against hostile Rucio text', () => {
  it('renders names, RSEs, checksums and PFNs as text, with no element or link of theirs', () => {
    const evil = '<img src=x onerror="alert(1)"><a href="javascript:alert(2)">x</a><script>alert(3)</script>';
    const rows: FileRow[] = [
      { scope: 'data26', name: evil, bytes: 1, adler32: evil, rses: [evil], pfn: `davs://h/${evil}` },
      { scope: 'data26', name: 'ok', bytes: 1, adler32: '0', rses: [], pfn: 'javascript:alert(4)//' },
    ];
    const src = { rows, version: 0 };
    const html = renderToStaticMarkup(
      React.createElement(FileTable, {
        rows,
        table: new FileTableState(src),
        version: 0,
        scheme: 'davs',
        pending: false,
        onChange: () => undefined,
        actions: { copy: () => undefined },
        trans,
      }),
    );
    expect(html).not.toMatch(/<(img|script|a)[\s>]|\shref="|\sonerror="/i);
    expect(html).toContain('&lt;img src=x onerror=');
  });
});
