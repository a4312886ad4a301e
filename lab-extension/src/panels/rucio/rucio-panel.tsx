// The Rucio panel (left sidebar): instance and scope pickers, a wildcard search with a type filter,
// and results whose containers and datasets expand; opening a dataset shows its files in the main
// area (dataset-view.tsx).
import type { TranslationBundle } from '@jupyterlab/translation';
import { Button, HTMLSelect } from '@jupyterlab/ui-components';
import type { Message } from '@lumino/messaging';
import React from 'react';
import { ModelPanel } from '../../components/model-panel';
import { PanelFrame } from '../../components/panel-frame';
import { formatBytes } from './rucio-files';
import type { ResultNode, RucioModel, TypeFilter } from './rucio-model';

/** What the panel's buttons do; index.ts binds them to commands. */
export interface RucioActions {
  /** Opens the dataset (or container) in the main area, or shows it if it is open already. */
  openDataset(node: ResultNode): void;
  registerOutputs(): void;
  login(): void;
}

const TYPE_LABELS: [TypeFilter, string][] = [
  ['dataset', 'Datasets'],
  ['container', 'Containers'],
  ['all', 'All'],
];

const n = (x: number) => x.toLocaleString('en-US');

function ResultItem(props: { node: ResultNode; depth: number; model: RucioModel; actions: RucioActions; trans: TranslationBundle }): JSX.Element {
  const { node, model, actions, trans } = props;
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
            title={trans.__('Open %1:%2: its files and replicas, in the main area', node.scope, node.name)}
            onClick={() => actions.openDataset(node)}
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
            <ResultItem key={`${c.scope}:${c.name}`} node={c} depth={props.depth + 1} model={model} actions={actions} trans={trans} />
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
        <div className="jp-AFRucio-results">
          {model.searchError && <div className="jp-AFRucio-error">{model.searchError}</div>}
          {model.searching && <div className="jp-AFRucio-muted">{trans.__('Searching… %1 found', n(model.results.length))}</div>}
          {model.results.length > 0 && (
            <ul className="jp-AFRucio-resultList">
              {model.results.map((r) => (
                <ResultItem key={`${r.scope}:${r.name}`} node={r} depth={0} model={model} actions={actions} trans={trans} />
              ))}
            </ul>
          )}
          {model.resultsCut && <div className="jp-AFRucio-muted">{trans.__('Only the first %1 are shown: narrow the pattern.', n(model.results.length))}</div>}
          {model.searched && !model.searchError && model.results.length === 0 && (
            <div className="jp-AFRucio-empty">{trans.__('Nothing in %1 matches %2.', model.scope, model.query.trim() || '*')}</div>
          )}
          {!model.searched && !model.searching && !model.searchError && (
            <div className="jp-AFRucio-empty">
              {trans.__(
                'Search a scope for datasets and containers by name; * matches anything (ds.mc.*). Open a dataset to see its files in a table beside your notebooks and get their list into a notebook.',
              )}
            </div>
          )}
        </div>
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
