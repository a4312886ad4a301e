// The dataset browser (main area, one per dataset): the DID, the load's progress with a cancel, a
// filter, the PFN scheme, what is selected, the actions on the selection (or on every file shown), the
// replication rule, and the table (file-table.tsx).
import type { TranslationBundle } from '@jupyterlab/translation';
import { ReactWidget, UseSignal } from '@jupyterlab/apputils';
import { Button, HTMLSelect } from '@jupyterlab/ui-components';
import React from 'react';
import type { DatasetModel } from './dataset-model';
import { FileTable } from './file-table';
import { formatBytes, type Scheme, SCHEMES } from './rucio-files';

export interface DatasetActions {
  copyPfns(model: DatasetModel): void;
  insertFileList(model: DatasetModel): void;
  makeAvailable(model: DatasetModel): void;
  copy(text: string, what: string): void;
}

const n = (x: number) => x.toLocaleString('en-US');

function Progress(props: { model: DatasetModel; trans: TranslationBundle }): JSX.Element {
  const { model, trans } = props;
  const count = model.rows.length;
  const total = model.length;
  let text: string;
  let fraction: number | null = null;
  if (model.phase === 'files') {
    text = total ? trans.__('%1 of %2 files', n(count), n(total)) : trans.__('%1 files', n(count));
    text += ' ' + trans.__('(listing…)');
    fraction = total ? count / total : null;
  } else if (model.phase === 'replicas') {
    text = trans.__('%1 files · finding %2 replicas: %3 of %4…', n(count), model.scheme, n(model.replicasSeen), n(count));
    fraction = count ? model.replicasSeen / count : null;
  } else {
    const bytes = model.rows.reduce((s, r) => s + r.bytes, 0);
    const withPfn = model.rows.reduce((s, r) => s + (r.pfn ? 1 : 0), 0);
    text = `${trans.__('%1 files', n(count))} · ${formatBytes(bytes)} · ${trans.__('%1 %2 PFNs', n(withPfn), model.scheme)}`;
    if (model.phase === 'cancelled') text += ` · ${trans.__('stopped: the list may be incomplete')}`;
  }
  return (
    <div className={`jp-AFRucio-progress${model.loading ? ' mod-loading' : ''}`}>
      <span className="jp-AFRucio-progressText" role="status">
        {text}
      </span>
      {model.loading && (
        <>
          <div className="jp-AFRucio-progressBar" role="progressbar" aria-valuenow={fraction === null ? undefined : Math.round(fraction * 100)}>
            <div style={{ width: fraction === null ? '100%' : `${Math.min(100, Math.round(fraction * 100))}%` }} />
          </div>
          <Button className="jp-mod-styled jp-mod-reject jp-AFRucio-cancel" small onClick={() => model.cancel()}>
            {trans.__('Stop')}
          </Button>
        </>
      )}
      {(model.phase === 'cancelled' || model.phase === 'error') && (
        <Button className="jp-mod-styled jp-mod-reject jp-AFRucio-reload" small onClick={() => void model.load()}>
          {trans.__('Load again')}
        </Button>
      )}
    </div>
  );
}

function RuleBox(props: { model: DatasetModel; trans: TranslationBundle }): JSX.Element | null {
  const { model, trans } = props;
  const view = model.rule;
  if (!view) return null;
  const r = view.rule;
  const state = r?.state ?? (view.checking ? '…' : '?');
  return (
    <div className={`jp-AFRucio-rule mod-${String(state).toLowerCase()}`} data-rule={view.id}>
      <div className="jp-AFRucio-ruleHead">
        <span>
          {trans.__('Rule')} <code title={view.id}>{view.id.slice(0, 8)}</code> {r ? trans.__('on %1', r.rse_expression) : ''}
        </span>
        <span className={`jp-AFRucio-ruleState mod-${String(state).toLowerCase()}`}>{state}</span>
      </div>
      {r && (
        <div className="jp-AFRucio-muted">
          {trans.__('%1 ok · %2 replicating · %3 stuck', String(r.locks_ok_cnt), String(r.locks_replicating_cnt), String(r.locks_stuck_cnt))}
          {r.expires_at ? ` · ${trans.__('expires %1', r.expires_at)}` : ''}
          {r.state === 'REPLICATING' ? ` · ${trans.__('checked every 10 s')}` : ''}
        </div>
      )}
      {r?.error && <div className="jp-AFRucio-error">{r.error}</div>}
      {view.error && <div className="jp-AFRucio-error">{view.error}</div>}
      <Button className="jp-mod-styled jp-mod-reject" small disabled={view.checking} onClick={() => void model.refreshRule()}>
        {view.checking ? trans.__('Checking…') : trans.__('Refresh state')}
      </Button>
    </div>
  );
}

export function DatasetView(props: { model: DatasetModel; actions: DatasetActions; trans: TranslationBundle }): JSX.Element {
  const { model, actions, trans } = props;
  const table = model.table;
  const shown = table.length;
  const selected = table.selectedCount;
  const usable = !model.loading && model.rows.length > 0;
  const what = selected ? trans.__('%1 selected', n(selected)) : table.filter.trim() ? trans.__('%1 shown', n(shown)) : trans.__('all %1', n(shown));
  return (
    <section className="jp-AFRucio-browser" data-did={model.did}>
      <header className="jp-AFRucio-browserHead">
        <h2 className="jp-AFRucio-datasetName" title={trans.__('%1 on Rucio instance %2', model.did, model.instance)}>
          <span className="jp-AFRucio-muted">{model.scope}:</span>
          {model.name}
          <span className="jp-AFRucio-kind mod-dataset">{model.type.toLowerCase()}</span>
        </h2>
        <Progress model={model} trans={trans} />
      </header>
      {model.loadError && <div className="jp-AFRucio-error">{model.loadError}</div>}
      <div className="jp-AFRucio-browserBar">
        <input
          className="jp-mod-styled jp-AFRucio-filter"
          type="search"
          placeholder={trans.__('Filter: words in the name, PFN, RSE or checksum')}
          aria-label={trans.__('Filter the files')}
          value={table.filter}
          onChange={(e) => {
            table.setFilter(e.target.value);
            model.tableChanged();
          }}
        />
        <label className="jp-AFRucio-scheme">
          {trans.__('PFNs')}
          <HTMLSelect
            className="jp-AFRucio-schemeSelect"
            value={model.scheme}
            onChange={(e) => void model.setScheme(e.target.value as Scheme)}
            options={[...SCHEMES]}
          />
        </label>
        <span className="jp-AFRucio-selection" role="status">
          {selected ? trans.__('%1 of %2 selected', n(selected), n(shown)) : trans.__('%1 of %2 files shown', n(shown), n(model.rows.length))}
        </span>
        <Button
          className="jp-mod-styled jp-mod-reject jp-AFRucio-selectAll"
          small
          disabled={shown === 0}
          onClick={() => {
            table.selectAllShown();
            model.tableChanged();
          }}
          title={trans.__('Select every file the filter keeps (Ctrl+A in the table)')}
        >
          {table.filter.trim() ? trans.__('Select all %1 matching', n(shown)) : trans.__('Select all')}
        </Button>
        <Button
          className="jp-mod-styled jp-mod-reject jp-AFRucio-clear"
          small
          disabled={selected === 0}
          onClick={() => {
            table.clearSelection();
            model.tableChanged();
          }}
          title={trans.__('Unselect all (Escape in the table)')}
        >
          {trans.__('Clear selection')}
        </Button>
      </div>
      <div className="jp-AFRucio-actions">
        <Button
          className="jp-mod-styled jp-mod-accept jp-AFRucio-insert"
          disabled={!usable || shown === 0}
          onClick={() => actions.insertFileList(model)}
          title={trans.__('Insert a cell defining files = [...] (%1 PFNs) into the active notebook', model.scheme)}
        >
          {trans.__('Insert file list (%1)', what)}
        </Button>
        <Button
          className="jp-mod-styled jp-mod-reject jp-AFRucio-copyPfns"
          disabled={!usable || shown === 0}
          onClick={() => actions.copyPfns(model)}
          title={trans.__('Copy the first %1 PFN of each file, one a line', model.scheme)}
        >
          {trans.__('Copy PFNs (%1)', what)}
        </Button>
        <Button
          className="jp-mod-styled jp-mod-reject jp-AFRucio-makeAvailable"
          onClick={() => actions.makeAvailable(model)}
          title={trans.__('Ask Rucio to keep a copy of the whole dataset on an RSE (a replication rule)')}
        >
          {trans.__('Make available…')}
        </Button>
      </div>
      <RuleBox model={model} trans={trans} />
      <FileTable
        rows={model.rows}
        table={table}
        version={model.version}
        scheme={model.scheme}
        pending={model.loading}
        onChange={() => model.tableChanged()}
        actions={actions}
        trans={trans}
      />
    </section>
  );
}

/** The browser's content widget; the plugin puts it in a MainAreaWidget. */
export class DatasetWidget extends ReactWidget {
  constructor(
    readonly model: DatasetModel,
    private readonly actions: DatasetActions,
    private readonly trans: TranslationBundle,
  ) {
    super();
    this.addClass('jp-AFRucio');
    this.addClass('jp-AFRucio-browserWidget');
  }

  render(): JSX.Element {
    return <UseSignal signal={this.model.changed}>{() => <DatasetView model={this.model} actions={this.actions} trans={this.trans} />}</UseSignal>;
  }

  override dispose(): void {
    if (this.isDisposed) return;
    this.model.dispose();
    super.dispose();
  }
}
