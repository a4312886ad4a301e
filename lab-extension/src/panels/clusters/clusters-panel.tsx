// The Clusters panel (left sidebar): the user's clusters, live, with their actions.
import type { TranslationBundle } from '@jupyterlab/translation';
import React, { useEffect, useState } from 'react';
import { ConnectionNotice, useTick } from '../common';
import type { AfCluster } from '@af-gateway/schemas';
import { formatUptime } from '../../components/format';
import { ModelPanel } from '../../components/model-panel';
import { PanelFrame } from '../../components/panel-frame';
import { clusterGroups, type ClustersModel, summarise } from './clusters-model';
import { GroupsSection } from './groups-section';

/** What the panel's buttons do; index.ts binds them to commands. */
export interface ClusterActions {
  create(): void;
  scale(name: string): void;
  shutdown(name: string): void;
  dashboards(name: string): Promise<Record<string, string>>;
  openDashboard(name: string, label: string, path: string): void;
  insertCode(name: string): void;
  login(): void;
}

/** The plots most analyses watch, offered first. */
const COMMON_PLOTS = ['Task Stream', 'Progress', 'Workers Memory', 'Graph', 'Cluster Memory'];

function Progress(props: { label: string; done: number; total: number }): JSX.Element {
  const determinate = props.total > 0;
  return (
    <div className="jp-AFClusters-progress" role="status">
      <div className={`jp-AFClusters-progressBar${determinate ? '' : ' mod-indeterminate'}`}>
        <div style={determinate ? { width: `${Math.round((100 * props.done) / props.total)}%` } : undefined} />
      </div>
      <span>{props.label}</span>
    </div>
  );
}

function DashboardList(props: { name: string; actions: ClusterActions; trans: TranslationBundle }): JSX.Element {
  const [plots, setPlots] = useState<Record<string, string> | null>(null);
  const [error, setError] = useState('');
  useEffect(() => {
    let live = true;
    props.actions.dashboards(props.name).then(
      (p) => live && setPlots(p),
      (e: Error) => live && setError(e.message),
    );
    return () => {
      live = false;
    };
  }, [props.name, props.actions]); // (the panel's actions are made once)
  if (error) return <div className="jp-AFClusters-error">{error}</div>;
  if (!plots) return <div className="jp-AFClusters-muted">{props.trans.__('Loading dashboards…')}</div>;
  const entries = Object.entries(plots);
  const common = entries.filter(([label]) => COMMON_PLOTS.includes(label));
  const link = ([label, path]: [string, string]) => (
    <li key={path}>
      <button className="jp-AFClusters-link" onClick={() => props.actions.openDashboard(props.name, label, path)}>
        {label}
      </button>
    </li>
  );
  return (
    <div className="jp-AFClusters-dashboards">
      <ul className="jp-AFClusters-plots">
        {link(['Status', 'status'])}
        {common.map(link)}
      </ul>
      <details className="jp-AFClusters-morePlots">
        <summary>{props.trans.__('All plots (%1)', String(entries.length))}</summary>
        <ul className="jp-AFClusters-plots">{entries.map(link)}</ul>
      </details>
    </div>
  );
}

function ClusterCard(props: { cluster: AfCluster; now: number; actions: ClusterActions; model: ClustersModel; trans: TranslationBundle }): JSX.Element {
  const { cluster, actions, trans } = props;
  const s = summarise(cluster);
  const [showPlots, setShowPlots] = useState(false);
  const running = s.status === 'RUNNING';
  const active = s.status === 'PENDING' || running;
  const groups = clusterGroups(cluster);
  const adaptiveRange = s.adaptive ? `${s.adaptive.minimum ?? 0} – ${s.adaptive.maximum ?? '∞'}` : '';
  return (
    <li className={`jp-AFClusters-cluster mod-${s.status.toLowerCase()}`} data-cluster={s.name}>
      <div className="jp-AFClusters-head">
        {/* The name is its owner's text: React puts it in text nodes, never in markup. */}
        <span className="jp-AFClusters-title" title={s.displayName ? trans.__('%1 (cluster %2)', s.displayName, s.name) : s.name}>
          {s.displayName && <span className="jp-AFClusters-displayName">{s.displayName}</span>}
          <span className={`jp-AFClusters-name${s.displayName ? ' mod-secondary' : ''}`}>{s.name}</span>
        </span>
        <span className={`jp-AFClusters-status mod-${s.status.toLowerCase()}`}>{s.status.toLowerCase()}</span>
      </div>
      {s.progress && <Progress {...s.progress} />}
      {s.note && <div className="jp-AFClusters-note">{s.note}</div>}
      {s.status === 'FAILED' && <div className="jp-AFClusters-error">{s.message || trans.__('The cluster failed.')}</div>}
      <dl className="jp-AFClusters-details">
        <dt>{trans.__('Workers')}</dt>
        <dd className="jp-AFClusters-workers" title={trans.__('connected / requested')}>
          {s.connected} / {s.requested}
        </dd>
        <dt>{trans.__('Cores')}</dt>
        <dd>{s.cores}</dd>
        <dt>{trans.__('Memory')}</dt>
        <dd>{`${Number(s.memoryGiB.toFixed(2))} GiB`}</dd>
        {/* with worker groups, the card-wide range is the default group's; each group shows its own below */}
        <dt title={groups.length > 0 ? trans.__("The default group's adaptive range; each worker group shows its own below") : undefined}>
          {groups.length > 0 ? trans.__('Adaptive (default)') : trans.__('Adaptive')}
        </dt>
        <dd className="jp-AFClusters-adaptive">{adaptiveRange || trans.__('off')}</dd>
        <dt>{trans.__('Uptime')}</dt>
        <dd>{formatUptime(props.now - s.startTime)}</dd>
      </dl>
      <div className="jp-AFClusters-actions">
        {active && (
          <>
            <button
              className="jp-Button jp-mod-styled jp-mod-reject"
              disabled={!running}
              onClick={() => actions.scale(s.name)}
              title={groups.length > 0 ? trans.__('Scale the default group, manually or adaptively (as the dask-gateway client does)') : undefined}
            >
              {trans.__('Scale')}
            </button>
            <button className="jp-Button jp-mod-styled jp-mod-reject" disabled={!running} onClick={() => setShowPlots(!showPlots)}>
              {trans.__('Dashboards')}
            </button>
            <button
              className="jp-Button jp-mod-styled jp-mod-accept"
              onClick={() => actions.insertCode(s.name)}
              title={trans.__('Insert code that connects to this cluster into the active notebook')}
            >
              {trans.__('Code')}
            </button>
            <button className="jp-Button jp-mod-styled jp-mod-warn" onClick={() => actions.shutdown(s.name)}>
              {trans.__('Shut down')}
            </button>
          </>
        )}
        {s.status === 'FAILED' && (
          <button className="jp-Button jp-mod-styled jp-mod-reject" onClick={() => props.model.dismiss(s.name)}>
            {trans.__('Dismiss')}
          </button>
        )}
      </div>
      {groups.length > 0 && active && <GroupsSection cluster={s.name} groups={groups} enabled={running} model={props.model} trans={trans} />}
      {showPlots && running && <DashboardList name={s.name} actions={actions} trans={trans} />}
    </li>
  );
}

function ClustersView(props: { model: ClustersModel; actions: ClusterActions; trans: TranslationBundle }): JSX.Element {
  const { model, actions, trans } = props;
  const now = useTick(1000);
  const clusters = model.list;
  const notice = ConnectionNotice({
    connection: model.connection,
    error: model.error,
    login: () => actions.login(),
    retry: () => void model.start(),
    trans,
    canLogin: model.client.authMode !== 'basic',
  });
  return (
    <PanelFrame
      className="jp-AFClusters-body"
      headerClassName="jp-AFClusters-header"
      title={trans.__('Dask clusters')}
      button={{
        className: 'jp-mod-accept jp-AFClusters-new',
        label: trans.__('+ New'),
        tooltip: trans.__('Create a new Dask cluster'),
        disabled: model.connection !== 'connected',
        onClick: () => actions.create(),
      }}
    >
      {notice ?? (
        <ul className="jp-AFClusters-list">
          {model.creating > 0 && (
            <li className="jp-AFClusters-cluster mod-creating">
              <Progress label={trans.__('Creating cluster…')} done={0} total={0} />
            </li>
          )}
          {clusters.map((c) => (
            <ClusterCard key={c.name} cluster={c} now={now} actions={actions} model={model} trans={trans} />
          ))}
          {clusters.length === 0 && model.creating === 0 && (
            <li className="jp-AFClusters-empty">{trans.__('No clusters yet. Create one here, or from a notebook with dask_gateway: it shows up here too.')}</li>
          )}
        </ul>
      )}
    </PanelFrame>
  );
}

export class ClustersPanel extends ModelPanel<ClustersModel, ClusterActions> {
  constructor(model: ClustersModel, actions: ClusterActions, trans: TranslationBundle) {
    super(model, actions, trans, 'jp-AFClusters', ClustersView);
  }
}
