// The Workflows panel (left sidebar): the user's runs, live from the event stream, with their steps
// per state as a compact bar and the actions on each.
import type { TranslationBundle } from '@jupyterlab/translation';
import { Button } from '@jupyterlab/ui-components';
import React from 'react';
import { ConnectionNotice, useTick } from '../common';
import type { WorkflowRun } from '@af-gateway/schemas';
import { formatUptime } from '../../components/format';
import { ModelPanel } from '../../components/model-panel';
import { PanelFrame } from '../../components/panel-frame';
import { canCancel, canRetry, countSegments, isFinished, type WorkflowsModel } from './workflows-model';

/** What the panel's buttons do; the commands module binds them. */
export interface WorkflowActions {
  run(): void;
  open(id: string): void;
  cancel(id: string): void;
  retry(id: string): void;
  remove(id: string): void;
  login(): void;
}

/** The steps per state as one thin stacked bar, with the numbers in its tooltip. */
export function StateBar(props: { run: WorkflowRun; trans: TranslationBundle }): JSX.Element {
  const segments = countSegments(props.run);
  const tip = segments.map((s) => `${s.state.toLowerCase()}: ${s.count}`).join(', ') || props.trans.__('no steps yet');
  return (
    <div className="jp-AFWorkflows-bar" title={tip} role="img" aria-label={tip}>
      {segments.map((s) => (
        <div
          key={s.state}
          className={`jp-AFWorkflows-barPart mod-${s.state.toLowerCase()}`}
          data-state={s.state}
          data-count={s.count}
          style={{ width: `${(s.fraction * 100).toFixed(2)}%` }}
        />
      ))}
    </div>
  );
}

function RunCard(props: { run: WorkflowRun; now: number; actions: WorkflowActions; trans: TranslationBundle }): JSX.Element {
  const { run, actions, trans } = props;
  const st = run.status.toLowerCase();
  const c = run.counts;
  const total = c.DEFINED + c.RUNNING + c.SUCCESS + c.FAILED + c.CANCELLED;
  const age = formatUptime(props.now - run.created);
  return (
    <li className={`jp-AFWorkflows-run mod-${st}`} data-run={run.id} data-name={run.name}>
      <div className="jp-AFWorkflows-head">
        <button className="jp-AFWorkflows-name" title={trans.__('Open the DAG of %1 (%2)', run.name, run.id)} onClick={() => actions.open(run.id)}>
          {run.name}
        </button>
        <span className={`jp-AFWorkflows-status mod-${st}`}>{run.status.toLowerCase()}</span>
      </div>
      <StateBar run={run} trans={trans} />
      <div className="jp-AFWorkflows-meta">
        <span className="jp-AFWorkflows-steps">{trans._n('%1 step', '%1 steps', total)}</span>
        {c.SUCCESS > 0 && <span className="jp-AFWorkflows-count mod-success">{`${c.SUCCESS} ✓`}</span>}
        {c.RUNNING > 0 && <span className="jp-AFWorkflows-count mod-running">{`${c.RUNNING} ▶`}</span>}
        {c.FAILED > 0 && <span className="jp-AFWorkflows-count mod-failed">{`${c.FAILED} ✗`}</span>}
        <span className="jp-AFWorkflows-age" title={new Date(run.created).toLocaleString()}>
          {trans.__('%1 ago', age)}
        </span>
        <span className="jp-AFWorkflows-backend">{run.backend}</span>
      </div>
      {run.message && run.status !== 'SUCCESS' && <div className={`jp-AFWorkflows-message mod-${st}`}>{run.message}</div>}
      <div className="jp-AFWorkflows-actions">
        <Button className="jp-mod-styled jp-mod-accept" onClick={() => actions.open(run.id)}>
          {trans.__('DAG')}
        </Button>
        {canCancel(run.status) && (
          <Button className="jp-mod-styled jp-mod-warn" onClick={() => actions.cancel(run.id)}>
            {trans.__('Cancel')}
          </Button>
        )}
        {canRetry(run.status) && (
          <Button className="jp-mod-styled jp-mod-reject" onClick={() => actions.retry(run.id)}>
            {trans.__('Retry')}
          </Button>
        )}
        {isFinished(run.status) && (
          <Button className="jp-mod-styled jp-mod-reject" onClick={() => actions.remove(run.id)}>
            {trans.__('Delete')}
          </Button>
        )}
      </div>
    </li>
  );
}

function WorkflowsView(props: { model: WorkflowsModel; actions: WorkflowActions; trans: TranslationBundle }): JSX.Element {
  const { model, actions, trans } = props;
  // ages read "12s ago": they tick with the seconds
  const now = useTick(1000);
  const notice = ConnectionNotice({
    connection: model.connection,
    error: model.error,
    login: () => actions.login(),
    retry: () => void model.reload(),
    trans,
    canLogin: model.client.authMode !== 'basic',
  });
  const runs = model.list;
  return (
    <PanelFrame
      className="jp-AFWorkflows-body"
      headerClassName="jp-AFClusters-header"
      title={trans.__('Workflows')}
      button={{
        className: 'jp-mod-accept jp-AFClusters-new jp-AFWorkflows-new',
        label: trans.__('+ Run workflow…'),
        tooltip: trans.__('Run a workflow file of the file browser'),
        disabled: model.connection !== 'connected',
        onClick: () => actions.run(),
      }}
    >
      {notice ?? (
        <ul className="jp-AFWorkflows-list">
          {runs.map((r) => (
            <RunCard key={r.id} run={r} now={now} actions={actions} trans={trans} />
          ))}
          {runs.length === 0 && (
            <li className="jp-AFWorkflows-empty">
              {trans.__(
                'No workflow runs yet. Right-click a workflow file (.yml, .yaml, .json) in the file browser and choose “Run as workflow”, or use the button above.',
              )}
            </li>
          )}
        </ul>
      )}
    </PanelFrame>
  );
}

export class WorkflowsPanel extends ModelPanel<WorkflowsModel, WorkflowActions> {
  constructor(model: WorkflowsModel, actions: WorkflowActions, trans: TranslationBundle) {
    super(model, actions, trans, 'jp-AFWorkflows', WorkflowsView);
  }
}
