// The main-area view of one run: header (status, legend with counts, zoom, cancel/retry), the live
// DAG (dag-renderer.ts) and the details pane of the node picked.
import { ReactWidget } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import { Button } from '@jupyterlab/ui-components';
import React, { useEffect, useMemo, useRef, useState } from 'react';
import type { WorkflowState } from '@af-gateway/schemas';
import type { GatewayClient } from '../../api/gateway-client';
import { formatUptime } from '../../components/format';
import { useTick } from '../common';
import type { DagModel } from './dag-model';
import { DagRenderer } from './dag-renderer';
import { countsByStage, initCount, scopeOfStage, skippedStages, STATES, totalCounts } from './dag-state';
import { NodeDetails } from './node-details';
import { canCancel, canRetry } from './workflows-model';

export interface DagActions {
  cancel(id: string): void;
  retry(id: string): void;
  download(id: string, rel: string): void;
}

/** Re-renders at most once per animation frame while the model changes. */
function useModelVersion(model: DagModel): number {
  const [version, setVersion] = useState(model.version);
  useEffect(() => {
    let frame = 0;
    const on = () => {
      if (!frame)
        frame = requestAnimationFrame(() => {
          frame = 0;
          setVersion(model.version);
        });
    };
    model.changed.connect(on);
    return () => {
      model.changed.disconnect(on);
      cancelAnimationFrame(frame);
    };
  }, [model]);
  return version;
}

const STATE_LABEL: Record<WorkflowState, string> = { DEFINED: 'Defined', RUNNING: 'Running', SUCCESS: 'Success', FAILED: 'Failed', CANCELLED: 'Cancelled' };

function DagView(props: {
  model: DagModel;
  client: GatewayClient;
  actions: DagActions;
  trans: TranslationBundle;
  rendererRef: { current: DagRenderer | null };
}): JSX.Element {
  const { model, trans, actions, rendererRef } = props; // (rendererRef: the widget's one ref object)
  const version = useModelVersion(model);
  const now = useTick(1000);
  const host = useRef<HTMLDivElement>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [zoom, setZoom] = useState(1);
  const state = model.state;

  useEffect(() => {
    if (!host.current) return;
    const r = new DagRenderer(host.current, model, { select: setSelected, zoomed: setZoom });
    rendererRef.current = r;
    return () => {
      r.dispose();
      rendererRef.current = null;
    };
  }, [model, rendererRef]);
  useEffect(() => rendererRef.current?.select(selected), [rendererRef, selected]);

  // eslint-disable-next-line react-hooks/exhaustive-deps -- the model changes its state in place; version says when
  const total = useMemo(() => (state ? totalCounts(countsByStage(state)) : null), [state, version]);
  // eslint-disable-next-line react-hooks/exhaustive-deps -- as above
  const skipped = useMemo(() => (state ? skippedStages(state) : 0), [state, version]);
  // eslint-disable-next-line react-hooks/exhaustive-deps -- as above
  const inits = useMemo(() => (state ? initCount(state) : 0), [state, version]);
  const run = state?.run ?? null;
  const node = selected ? model.node(selected) : undefined;
  const scope = node ? scopeOfStage(node.stage) : '';
  const renderer = () => rendererRef.current;
  const status = run?.status.toLowerCase() ?? 'loading';
  return (
    <div className={`jp-AFDag-body mod-${status}`} data-run={model.runId}>
      <header className="jp-AFDag-header">
        <div className="jp-AFDag-title">
          <h2 title={model.runId}>{run?.name ?? model.runId}</h2>
          {run && <span className={`jp-AFWorkflows-status mod-${status}`}>{run.status}</span>}
          {run && (
            <span className="jp-AFDag-meta">
              {run.finished
                ? trans.__('%1 · took %2, finished %3', run.backend, formatUptime(run.finished - run.created), new Date(run.finished).toLocaleTimeString())
                : trans.__('%1 · started %2 ago', run.backend, formatUptime(now - run.created))}
              {run.stages_total != null && ` · ${trans.__('%1 of %2 stages applied', String(run.stages_applied ?? 0), String(run.stages_total))}`}
            </span>
          )}
        </div>
        <ul className="jp-AFDag-legend" aria-label={trans.__('Steps per state')}>
          <li
            className="jp-AFDag-legendItem mod-init"
            data-state="INIT"
            title={trans.__('The run’s init (and each subworkflow’s): its parameters, no step to run; the counts beside it are steps')}
          >
            <span className="jp-AFDag-swatch" />
            {trans.__('Init')} <span className="jp-AFDag-legendCount">{inits.toLocaleString('en-US')}</span>
          </li>
          {STATES.map((s) => (
            <li key={s} className={`jp-AFDag-legendItem mod-${s.toLowerCase()}`} data-state={s}>
              <span className="jp-AFDag-swatch" />
              {trans.__(STATE_LABEL[s])} <span className="jp-AFDag-legendCount">{(total?.[s] ?? 0).toLocaleString('en-US')}</span>
            </li>
          ))}
          {skipped > 0 && (
            <li
              className="jp-AFDag-legendItem mod-skipped"
              data-state="SKIPPED"
              title={trans.__(
                'Stages never applied, as yadage leaves them (no case held, an empty scatter, an unfulfilled expression, or a stage they depend on skipped)',
              )}
            >
              <span className="jp-AFDag-swatch" />
              {trans.__('Skipped stages')} <span className="jp-AFDag-legendCount">{skipped.toLocaleString('en-US')}</span>
            </li>
          )}
        </ul>
        <div className="jp-AFDag-tools">
          <button className="jp-AFDag-tool" title={trans.__('Zoom out')} aria-label={trans.__('Zoom out')} onClick={() => renderer()?.zoomBy(1 / 1.4)}>
            −
          </button>
          <span className="jp-AFDag-zoom">{Math.round(zoom * 100)}%</span>
          <button className="jp-AFDag-tool" title={trans.__('Zoom in')} aria-label={trans.__('Zoom in')} onClick={() => renderer()?.zoomBy(1.4)}>
            +
          </button>
          <button className="jp-AFDag-tool mod-fit" title={trans.__('Fit to view')} onClick={() => renderer()?.fit()}>
            {trans.__('Fit')}
          </button>
          {run && canCancel(run.status) && (
            <Button className="jp-mod-styled jp-mod-warn jp-AFDag-action" onClick={() => actions.cancel(run.id)}>
              {trans.__('Cancel')}
            </Button>
          )}
          {run && canRetry(run.status) && (
            <Button className="jp-mod-styled jp-mod-accept jp-AFDag-action" onClick={() => actions.retry(run.id)}>
              {trans.__('Retry')}
            </Button>
          )}
        </div>
      </header>
      {run?.message && <div className={`jp-AFDag-message mod-${status}`}>{run.message}</div>}
      {model.phase === 'error' && <div className="jp-AFDag-message mod-failed">{model.error}</div>}
      <div className="jp-AFDag-main">
        <div className="jp-AFDag-canvas">
          <div className="jp-AFDag-host" ref={host} />
          {model.phase === 'loading' && <div className="jp-AFDag-loading">{trans.__('Loading the run…')}</div>}
        </div>
        {node && (
          <NodeDetails
            client={props.client}
            run={run}
            runId={model.runId}
            node={node}
            scope={scope}
            scopeCase={scope ? model.node(`${scope}.init`)?.case : undefined}
            now={now}
            download={(rel) => actions.download(model.runId, rel)}
            close={() => setSelected(null)}
            trans={trans}
          />
        )}
      </div>
    </div>
  );
}

/** The content of a run's main-area tab. */
export class DagWidget extends ReactWidget {
  /** The renderer, once mounted (tests and the toolbar reach it through here). */
  readonly rendererRef: { current: DagRenderer | null } = { current: null };

  constructor(
    readonly model: DagModel,
    private readonly client: GatewayClient,
    private readonly actions: DagActions,
    private readonly trans: TranslationBundle,
  ) {
    super();
    this.addClass('jp-AFDag');
  }

  render(): JSX.Element {
    return <DagView model={this.model} client={this.client} actions={this.actions} trans={this.trans} rendererRef={this.rendererRef} />;
  }

  override dispose(): void {
    if (this.isDisposed) return;
    this.model.dispose();
    super.dispose();
  }
}
