// The dataset browser's table: a header of sortable columns, and the rows as a virtualised list —
// fixed-height rows, only the visible slice (plus a small overscan) in the DOM, in a spacer with the
// full height so the scrollbar is true. 100,000 files scroll as smoothly as 5, and rows show while
// the rest streams in. Rows are selected by click, ctrl/cmd-click and shift-click (ranges); each has
// buttons that copy its PFN and its name.
//
// Why our own ~20 lines and not a library: with rows of one fixed height the visible slice is one
// division (visibleSlice, file-table-state.ts), which @tanstack/react-virtual would do for us with measuring
// machinery we do not need; Lumino's DataGrid (the CSV viewer's) paints a canvas, so rows could not
// hold buttons, be found by a screen reader or a test, or take the theme's fonts as text does.
import { copyIcon } from '@jupyterlab/ui-components';
import type { TranslationBundle } from '@jupyterlab/translation';
import React, { useEffect, useRef, useState } from 'react';
import { type FileTableState, ROW_HEIGHT, type SortKey, visibleSlice } from './file-table-state';
import { type FileRow, formatBytes } from './rucio-files';

export interface FileTableActions {
  copy(text: string, what: string): void;
}

interface Column {
  key: SortKey;
  label: string;
  title: string;
}

/**
 * A PFN that, cut to fit, keeps its file name: the part up to the last `/` gives way (ellipsis in the
 * middle), so a narrow pane shows `davs://webdav.site-a.te…/file.0001.root`. The text stays whole.
 */
function PfnText(props: { pfn: string }): JSX.Element {
  const cut = props.pfn.lastIndexOf('/') + 1;
  return (
    <>
      <span className="jp-AFRucio-pfnHead">{props.pfn.slice(0, cut)}</span>
      <span className="jp-AFRucio-pfnTail">{props.pfn.slice(cut)}</span>
    </>
  );
}

function Row(props: {
  row: FileRow;
  pos: number;
  index: number;
  selected: boolean;
  scheme: string;
  pending: boolean;
  onClick(e: React.MouseEvent, pos: number): void;
  actions: FileTableActions;
  trans: TranslationBundle;
}): JSX.Element {
  const { row, trans } = props;
  const rses = row.rses.join(', ');
  return (
    <div
      className={`jp-AFRucio-file${props.selected ? ' jp-mod-selected' : ''}`}
      role="row"
      aria-selected={props.selected}
      aria-rowindex={props.pos + 2}
      data-pos={props.pos}
      data-index={props.index}
      style={{ top: props.pos * ROW_HEIGHT, height: ROW_HEIGHT }}
      onMouseDown={(e) => e.shiftKey && e.preventDefault() /* no text selection on shift-click */}
      onClick={(e) => props.onClick(e, props.pos)}
    >
      <div className="jp-AFRucio-fileName" role="cell" title={`${row.scope}:${row.name}`}>
        {row.name}
      </div>
      <div className="jp-AFRucio-fileSize" role="cell" title={trans.__('%1 bytes', row.bytes.toLocaleString('en-US'))}>
        {formatBytes(row.bytes)}
      </div>
      <div className="jp-AFRucio-fileChecksum" role="cell">
        {row.adler32 || '—'}
      </div>
      <div className="jp-AFRucio-fileRses" role="cell" title={rses}>
        {rses || (props.pending ? '…' : trans.__('no replica'))}
      </div>
      <div className="jp-AFRucio-fileCopy" role="cell">
        <button
          className="jp-AFRucio-copy mod-pfn"
          disabled={!row.pfn}
          title={trans.__('Copy the %1 PFN', props.scheme)}
          aria-label={trans.__('Copy the PFN of %1', row.name)}
          onClick={(e) => {
            e.stopPropagation();
            props.actions.copy(row.pfn, trans.__('the PFN of %1', row.name));
          }}
        >
          <copyIcon.react tag="span" elementSize="small" />
          PFN
        </button>
        <button
          className="jp-AFRucio-copy mod-name"
          title={trans.__('Copy the DID (scope:name)')}
          aria-label={trans.__('Copy the name of %1', row.name)}
          onClick={(e) => {
            e.stopPropagation();
            props.actions.copy(`${row.scope}:${row.name}`, trans.__('the DID %1:%2', row.scope, row.name));
          }}
        >
          <copyIcon.react tag="span" elementSize="small" />
          {trans.__('Name')}
        </button>
      </div>
      <div className={`jp-AFRucio-filePfn${row.pfn ? '' : ' mod-missing'}`} role="cell" title={row.pfn}>
        {row.pfn ? <PfnText pfn={row.pfn} /> : props.pending ? '…' : trans.__('no %1 PFN', props.scheme)}
      </div>
    </div>
  );
}

export function FileTable(props: {
  rows: FileRow[];
  table: FileTableState;
  version: number;
  scheme: string;
  pending: boolean;
  /** The table's order or selection changed (the model tells the views). */
  onChange(): void;
  actions: FileTableActions;
  trans: TranslationBundle;
}): JSX.Element {
  const { table, trans } = props;
  const ref = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    setHeight(el.clientHeight || 600);
    const ro = new ResizeObserver(() => setHeight(el.clientHeight || 600));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  const columns: Column[] = [
    { key: 'name', label: trans.__('Name'), title: trans.__('File name (the DID is scope:name)') },
    { key: 'bytes', label: trans.__('Size'), title: trans.__('Size in decimal units, as Rucio reports it') },
    { key: 'adler32', label: trans.__('Checksum (adler32)'), title: trans.__('The adler32 checksum Rucio holds for the file') },
    { key: 'rses', label: trans.__('RSEs'), title: trans.__('The storage elements (RSEs) holding a replica') },
    { key: 'pfn', label: trans.__('PFN (%1)', props.scheme), title: trans.__('The first %1 replica’s physical file name', props.scheme) },
  ];
  const total = table.length;
  const [first, last] = visibleSlice(scrollTop, height, total);
  const onClick = (e: React.MouseEvent, pos: number) => {
    table.click(pos, { range: e.shiftKey, toggle: e.ctrlKey || e.metaKey });
    props.onChange();
  };
  const slice: JSX.Element[] = [];
  for (let pos = first; pos < last; pos++) {
    const index = table.rowAt(pos);
    slice.push(
      <Row
        key={index}
        row={props.rows[index]!}
        pos={pos}
        index={index}
        selected={table.isSelected(index)}
        scheme={props.scheme}
        pending={props.pending}
        onClick={onClick}
        actions={props.actions}
        trans={trans}
      />,
    );
  }
  const sort = table.sort;
  const header = (c: Column) => {
    const dir = sort?.key === c.key ? sort.dir : 0;
    return (
      <div key={c.key} role="columnheader" className={`jp-AFRucio-col mod-${c.key}`} aria-sort={dir === 1 ? 'ascending' : dir === -1 ? 'descending' : 'none'}>
        <button
          className="jp-AFRucio-sort"
          title={trans.__('%1 — click to sort (again: reverse, a third time: the dataset’s order)', c.title)}
          onClick={() => {
            table.toggleSort(c.key);
            props.onChange();
          }}
        >
          {c.label}
          <span className="jp-AFRucio-sortMark" aria-hidden>
            {dir === 1 ? '▲' : dir === -1 ? '▼' : ''}
          </span>
        </button>
      </div>
    );
  };
  return (
    <div
      className="jp-AFRucio-fileTable"
      ref={ref}
      role="grid"
      aria-rowcount={total + 1}
      aria-multiselectable
      tabIndex={0}
      onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
      onKeyDown={(e) => {
        if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'a') {
          e.preventDefault();
          table.selectAllShown();
          props.onChange();
        } else if (e.key === 'Escape') {
          table.clearSelection();
          props.onChange();
        }
      }}
    >
      <div className="jp-AFRucio-fileHeader" role="row" aria-rowindex={1}>
        {columns.map((c) => [
          c.key === 'pfn' && (
            <div key="copy" role="columnheader" className="jp-AFRucio-col mod-copy">
              {trans.__('Copy')}
            </div>
          ),
          header(c),
        ])}
      </div>
      <div className="jp-AFRucio-fileSpacer" role="rowgroup" style={{ height: total * ROW_HEIGHT }}>
        {slice}
      </div>
    </div>
  );
}
