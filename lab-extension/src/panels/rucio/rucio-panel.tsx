// The Rucio panel (left sidebar): instance and scope pickers, a wildcard search with a type filter,
// results whose containers and datasets expand, and the open dataset's files (virtualised) with
// their replicas and PFNs for the chosen scheme, and what to do with them.
import type { TranslationBundle } from '@jupyterlab/translation';
import { Button, HTMLSelect } from '@jupyterlab/ui-components';
import type { Message } from '@lumino/messaging';
import React from 'react';
import { ModelPanel } from '../../components/model-panel';
import { PanelFrame } from '../../components/panel-frame';
import { FileTable } from './file-table';
import { formatBytes, type Scheme, SCHEMES } from './rucio-files';
import type { ResultNode, RucioModel, TypeFilter } from './rucio-model';

/** What the panel's buttons do; index.ts binds them to commands. */
export interface RucioActions {
  copyPfns(): void;
  insertFileList(): void;
  makeAvailable(): void;
  registerOutputs(): void;
  login(): void;
}

const TYPE_LABELS: [TypeFilter, string][] = [
  ['dataset', 'Datasets'],
  ['container', 'Containers'],
  ['all', 'All'],
];

const n = (x: number) => x.toLocaleString('en-US');

function ResultItem(props: { node: ResultNode; depth: number; model: RucioModel; trans: TranslationBundle }): JSX.Element {
  const { node, model, trans } = props;
  const expandable = node.type === 'DATASET' || node.type === 'CONTAINER';
  const kind = node.type.toLowerCase();
  const size = [
    node.length != null ? `${n(node.length)} ${node.length === 1 ? trans.__('file') : trans.__('files')}` : '',
    node.bytes != null ? formatBytes(node.bytes) : '',
  ]
    .filter(Boolean)
    .join(' · ');
  return (
    <li className={`jp-AFRucio-result mod-${kind}`} data-did={`${node.scope}:${node.name}`}>
      <div className="jp-AFRucio-resultHead" style={{ paddingLeft: props.depth * 14 }}>
        <button
          className={`jp-AFRucio-twisty${node.expanded ? ' mod-expanded' : ''}`}
          disabled={!expandable}
          aria-label={node.expanded ? trans.__('Fold') : trans.__('Expand')}
          aria-expanded={expandable ? node.expanded : undefined}
          onClick={() => void model.toggle(node)}
        >
          {expandable ? '▸' : ''}
        </button>
        <span className={`jp-AFRucio-kind mod-${kind}`}>{kind === 'container' ? 'C' : kind === 'dataset' ? 'D' : 'F'}</span>
        {expandable ? (
          <button
            className="jp-AFRucio-resultName"
            title={trans.__('Open %1:%2: its files and replicas', node.scope, node.name)}
            onClick={() => void model.open(node)}
          >
            {node.name}
          </button>
        ) : (
          <span className="jp-AFRucio-resultName mod-file" title={`${node.scope}:${node.name}`}>
            {node.name}
          </span>
        )}
        <span className="jp-AFRucio-resultSize">{size}</span>
      </div>
      {node.expanded && (
        <ul className="jp-AFRucio-children">
          {node.loading && (
            <li className="jp-AFRucio-muted" style={{ paddingLeft: (props.depth + 1) * 14 + 22 }}>
              {trans.__('Loading…')}
            </li>
          )}
          {node.error && (
            <li className="jp-AFRucio-error" style={{ paddingLeft: (props.depth + 1) * 14 + 22 }}>
              {node.error}
            </li>
          )}
          {node.children?.map((c) => (
            <ResultItem key={`${c.scope}:${c.name}`} node={c} depth={props.depth + 1} model={model} trans={trans} />
          ))}
          {node.children?.length === 0 && (
            <li className="jp-AFRucio-muted" style={{ paddingLeft: (props.depth + 1) * 14 + 22 }}>
              {trans.__('Empty')}
            </li>
          )}
          {node.more && (
            <li className="jp-AFRucio-muted" style={{ paddingLeft: (props.depth + 1) * 14 + 22 }}>
              {trans.__('… more: open it to see everything')}
            </li>
          )}
        </ul>
      )}
    </li>
  );
}

function Progress(props: { model: RucioModel; trans: TranslationBundle }): JSX.Element {
  const { model, trans } = props;
  const d = model.dataset!;
  const count = model.rows.length;
  const total = d.length ?? null;
  let text: string;
  let cls = '';
  let fraction: number | null = null;
  if (model.phase === 'files') {
    text = trans.__('%1 files loaded…', n(count)) + (total ? ` (${trans.__('of %1', n(total))})` : '');
    fraction = total ? count / total : null;
    cls = ' mod-loading';
  } else if (model.phase === 'replicas') {
    text = trans.__('%1 files · finding %2 replicas: %3 of %4…', n(count), model.scheme, n(model.replicasSeen), n(count));
    fraction = count ? model.replicasSeen / count : null;
    cls = ' mod-loading';
  } else if (model.phase === 'error') {
    text = trans.__('%1 files', n(count));
  } else {
    const bytes = model.rows.reduce((s, r) => s + r.bytes, 0);
    const withPfn = model.rows.reduce((s, r) => s + (r.pfn ? 1 : 0), 0);
    text = `${trans.__('%1 files', n(count))} · ${formatBytes(bytes)} · ${trans.__('%1 %2 PFNs', n(withPfn), model.scheme)}`;
  }
  return (
    <div className={`jp-AFRucio-progress${cls}`} role="status">
      <span className="jp-AFRucio-progressText">{text}</span>
      {fraction !== null && (
        <div className="jp-AFRucio-progressBar">
          <div style={{ width: `${Math.min(100, Math.round(fraction * 100))}%` }} />
        </div>
      )}
    </div>
  );
}

function RuleBox(props: { model: RucioModel; trans: TranslationBundle }): JSX.Element | null {
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
      <button className="jp-Button jp-mod-styled jp-mod-reject jp-AFRucio-small" disabled={view.checking} onClick={() => void model.refreshRule()}>
        {view.checking ? trans.__('Checking…') : trans.__('Refresh state')}
      </button>
    </div>
  );
}

function DatasetView(props: { model: RucioModel; actions: RucioActions; trans: TranslationBundle }): JSX.Element {
  const { model, actions, trans } = props;
  const d = model.dataset!;
  const ready = model.phase === 'done' && model.rows.length > 0;
  return (
    <section className="jp-AFRucio-dataset" data-did={model.didLabel}>
      <div className="jp-AFRucio-datasetHead">
        <button className="jp-AFRucio-back" onClick={() => model.closeDataset()} title={trans.__('Back to the search results')}>
          {trans.__('← Results')}
        </button>
        <label className="jp-AFRucio-scheme">
          {trans.__('PFNs')}
          <HTMLSelect
            className="jp-AFRucio-schemeSelect"
            value={model.scheme}
            onChange={(e) => void model.setScheme(e.target.value as Scheme)}
            options={[...SCHEMES]}
          />
        </label>
      </div>
      <h3 className="jp-AFRucio-datasetName" title={model.didLabel}>
        <span className="jp-AFRucio-muted">{d.scope}:</span>
        {d.name}
      </h3>
      <Progress model={model} trans={trans} />
      {model.loadError && <div className="jp-AFRucio-error">{model.loadError}</div>}
      <div className="jp-AFRucio-actions">
        <button
          className="jp-Button jp-mod-styled jp-mod-reject"
          disabled={!ready}
          onClick={() => actions.copyPfns()}
          title={trans.__('Copy the first %1 PFN of each file, one a line', model.scheme)}
        >
          {trans.__('Copy PFNs')}
        </button>
        <button
          className="jp-Button jp-mod-styled jp-mod-accept"
          disabled={!ready}
          onClick={() => actions.insertFileList()}
          title={trans.__('Insert a cell defining files = [...] into the active notebook')}
        >
          {trans.__('Insert file list')}
        </button>
        <button
          className="jp-Button jp-mod-styled jp-mod-reject"
          onClick={() => actions.makeAvailable()}
          title={trans.__('Ask Rucio to keep a copy on an RSE (a replication rule)')}
        >
          {trans.__('Make available…')}
        </button>
      </div>
      <RuleBox model={model} trans={trans} />
      <FileTable rows={model.rows} version={model.version} scheme={model.scheme} pending={model.phase === 'files' || model.phase === 'replicas'} />
    </section>
  );
}

function RucioView(props: { model: RucioModel; actions: RucioActions; trans: TranslationBundle }): JSX.Element {
  const { model, actions, trans } = props;
  let body: JSX.Element;
  if (model.state === 'login-required') {
    body = (
      <div className="jp-AFRucio-notice">
        <p>{model.error}</p>
        {model.client.authMode !== 'basic' ? (
          <Button className="jp-mod-styled jp-mod-accept" onClick={() => actions.login()}>
            {trans.__('Log in')}
          </Button>
        ) : (
          <p className="jp-AFRucio-muted">
            {trans.__('This Lab signs in to the gateway with a user name (basic authentication): set it under Settings → AF Gateway → User name.')}
          </p>
        )}
      </div>
    );
  } else if (model.state === 'error') {
    body = (
      <div className="jp-AFRucio-notice">
        <p className="jp-AFRucio-error">{model.error}</p>
        <Button className="jp-mod-styled jp-mod-accept" onClick={() => void model.start()}>
          {trans.__('Try again')}
        </Button>
      </div>
    );
  } else if (model.state === 'no-instances') {
    body = <div className="jp-AFRucio-empty">{trans.__('This gateway has no Rucio instance configured (rucio.instances in its config).')}</div>;
  } else if (model.state !== 'ready') {
    body = <div className="jp-AFRucio-muted">{trans.__('Connecting to Rucio…')}</div>;
  } else {
    body = (
      <>
        <div className="jp-AFRucio-pickers">
          <label>
            <span>{trans.__('Instance')}</span>
            <HTMLSelect className="jp-AFRucio-instance" value={model.instance} onChange={(e) => void model.selectInstance(e.target.value)}>
              {model.instances.map((i) => (
                <option key={i.name} value={i.name} title={i.url}>
                  {i.name}
                </option>
              ))}
            </HTMLSelect>
          </label>
          <label>
            <span>{trans.__('Scope')}</span>
            <HTMLSelect className="jp-AFRucio-scope" value={model.scope} onChange={(e) => model.selectScope(e.target.value)} options={model.scopes} />
          </label>
        </div>
        <form
          className="jp-AFRucio-search"
          onSubmit={(e) => {
            e.preventDefault();
            void model.search();
          }}
        >
          <input
            className="jp-mod-styled jp-AFRucio-query"
            type="search"
            placeholder={trans.__('Name, with * wildcards: ds.mc.*')}
            aria-label={trans.__('DID name pattern')}
            value={model.query}
            onChange={(e) => model.setQuery(e.target.value)}
          />
          <HTMLSelect
            className="jp-AFRucio-type"
            aria-label={trans.__('Type')}
            value={model.typeFilter}
            onChange={(e) => model.setTypeFilter(e.target.value as TypeFilter)}
            options={TYPE_LABELS.map(([value, label]) => ({ value, label: trans.__(label) }))}
          />
          <Button className="jp-mod-styled jp-mod-accept jp-AFRucio-go" type="submit" disabled={!model.scope}>
            {trans.__('Search')}
          </Button>
        </form>
        {model.dataset ? (
          <DatasetView model={model} actions={actions} trans={trans} />
        ) : (
          <div className="jp-AFRucio-results">
            {model.searchError && <div className="jp-AFRucio-error">{model.searchError}</div>}
            {model.searching && <div className="jp-AFRucio-muted">{trans.__('Searching… %1 found', n(model.results.length))}</div>}
            {model.results.length > 0 && (
              <ul className="jp-AFRucio-resultList">
                {model.results.map((r) => (
                  <ResultItem key={`${r.scope}:${r.name}`} node={r} depth={0} model={model} trans={trans} />
                ))}
              </ul>
            )}
            {model.resultsCut && (
              <div className="jp-AFRucio-muted">{trans.__('Only the first %1 are shown: narrow the pattern.', n(model.results.length))}</div>
            )}
            {model.searched && !model.searchError && model.results.length === 0 && (
              <div className="jp-AFRucio-empty">{trans.__('Nothing in %1 matches %2.', model.scope, model.query.trim() || '*')}</div>
            )}
            {!model.searched && !model.searching && !model.searchError && (
              <div className="jp-AFRucio-empty">
                {trans.__(
                  'Search a scope for datasets and containers by name; * matches anything (ds.mc.*). Open a dataset to see its files and get their list into a notebook.',
                )}
              </div>
            )}
          </div>
        )}
      </>
    );
  }
  return (
    <PanelFrame
      className="jp-AFRucio-body"
      headerClassName="jp-AFRucio-header"
      title={trans.__('Rucio')}
      button={{
        className: 'jp-mod-accept jp-AFRucio-register',
        label: trans.__('Register outputs…'),
        tooltip: trans.__('Register files a notebook or job wrote on an RSE into a dataset'),
        disabled: model.state !== 'ready',
        onClick: () => actions.registerOutputs(),
      }}
    >
      {body}
    </PanelFrame>
  );
}

export class RucioPanel extends ModelPanel<RucioModel, RucioActions> {
  constructor(model: RucioModel, actions: RucioActions, trans: TranslationBundle) {
    super(model, actions, trans, 'jp-AFRucio', RucioView);
  }

  /** Rucio is asked only once the panel is first shown. */
  protected override onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.model.start();
  }
}
