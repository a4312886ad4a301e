// The side pane of the DAG view: everything about one node (state, its subworkflow and the case that
// chose it, attempts, exit code, times, job, message, parameters, outputs, command) and its log,
// streamed while the step runs.
import type { TranslationBundle } from '@jupyterlab/translation';
import React, { useEffect, useLayoutEffect, useRef, useState } from 'react';
import type { WorkflowNode, WorkflowRun } from '@af-gateway/schemas';
import { type GatewayClient, GatewayError } from '../../api/gateway-client';
import { formatUptime } from '../../components/format';
import { isInitStage } from './dag-state';
import { workspacePath } from './workflow-bundle';
import { isFinished } from './workflows-model';

/** The log pane keeps this much of a log's end (a step may print gigabytes). */
const LOG_KEEP = 512 * 1024;

type LogPhase = 'waiting' | 'loading' | 'streaming' | 'done' | 'error';

/** A node's log: fetched once when finished, followed while it runs; restarted for a new attempt. */
function useNodeLog(client: GatewayClient, runId: string, node: WorkflowNode): { text: string; phase: LogPhase; error: string } {
  const [text, setText] = useState('');
  const [phase, setPhase] = useState<LogPhase>('waiting');
  const [error, setError] = useState('');
  const started = node.state === 'RUNNING' || node.started != null || node.attempts > 0;
  const finished = isFinished(node.state);
  // A finished step's log is fetched once; a running one is followed until the gateway ends it.
  const follow = started && !finished;
  const key = `${runId}\u0000${node.id}\u0000${node.attempts}`;
  /** The key whose followed stream ran to its end: the step's log is complete, no need to read it again. */
  const complete = useRef('');
  useEffect(() => {
    if (complete.current === key && !follow) return;
    if (complete.current !== key) complete.current = '';
    setText('');
    setError('');
    if (!started) {
      setPhase('waiting');
      return;
    }
    const ctrl = new AbortController();
    let buffer = '';
    let frame = 0;
    const flush = () => {
      frame = 0;
      setText(buffer);
    };
    setPhase(follow ? 'streaming' : 'loading');
    void (async () => {
      // A step that just started may not have a log yet: a followed log is asked for a few times.
      for (let attempt = 1; ; attempt++) {
        try {
          buffer = '';
          for await (const chunk of client.workflowLog(runId, node.id, follow, ctrl.signal)) {
            buffer += chunk;
            if (buffer.length > LOG_KEEP) buffer = buffer.slice(buffer.length - LOG_KEEP);
            if (!frame) frame = requestAnimationFrame(flush);
          }
          cancelAnimationFrame(frame);
          flush();
          setPhase('done');
          if (follow) complete.current = key;
          return;
        } catch (err) {
          if (ctrl.signal.aborted) return;
          if (follow && attempt < 5 && err instanceof GatewayError && err.status === 404) {
            await new Promise((r) => setTimeout(r, 1000));
            if (ctrl.signal.aborted) return;
            continue;
          }
          cancelAnimationFrame(frame);
          flush();
          setError(err instanceof Error ? err.message : String(err));
          setPhase('error');
          return;
        }
      }
    })();
    return () => {
      ctrl.abort();
      cancelAnimationFrame(frame);
    };
    // A new attempt or the step starting or finishing (a followed stream has ended by then) reads it anew.
    // eslint-disable-next-line react-hooks/exhaustive-deps -- key stands for runId and node.id
  }, [client, key, started, follow]);
  return { text, phase, error };
}

function LogView(props: { client: GatewayClient; runId: string; node: WorkflowNode; trans: TranslationBundle }): JSX.Element {
  const { trans } = props;
  const { text, phase, error } = useNodeLog(props.client, props.runId, props.node);
  const pre = useRef<HTMLPreElement>(null);
  const stick = useRef(true);
  useLayoutEffect(() => {
    const el = pre.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [text]);
  const status: Record<LogPhase, string> = {
    waiting: isFinished(props.node.state) ? trans.__('The step did not run.') : trans.__('The step has not started yet.'),
    loading: trans.__('Loading…'),
    streaming: trans.__('live'),
    done: '',
    error: error,
  };
  return (
    <section className="jp-AFDagDetails-section">
      <h3>
        {trans.__('Log')}
        {phase === 'streaming' && <span className="jp-AFDagDetails-live">{status.streaming}</span>}
      </h3>
      {phase === 'waiting' || phase === 'error' || (phase === 'loading' && !text) ? (
        <div className={`jp-AFDagDetails-muted${phase === 'error' ? ' jp-AFDagDetails-error' : ''}`}>{status[phase]}</div>
      ) : (
        <pre
          ref={pre}
          className="jp-AFDagDetails-log"
          data-phase={phase}
          onScroll={(e) => {
            const el = e.currentTarget;
            stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
          }}
        >
          {text || (phase === 'done' ? trans.__('(empty)') : '')}
        </pre>
      )}
    </section>
  );
}

/** Values of a parameter or output as a flat list (a multistep output is a list per step). */
function flatValues(value: unknown): unknown[] {
  return Array.isArray(value) ? value.flatMap(flatValues) : [value];
}

const show = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
/** Paths under the run's workspace are shown from there (the whole path is in their tooltip). */
const WS_PREFIX = '⟨workspace⟩/';

function ValueList(props: {
  title: string;
  values: Record<string, unknown>;
  run: WorkflowRun | null;
  download(rel: string): void;
  trans: TranslationBundle;
  className: string;
}): JSX.Element | null {
  const entries = Object.entries(props.values ?? {});
  if (!entries.length) return null;
  const ws = props.run?.workspace ?? '';
  return (
    <section className="jp-AFDagDetails-section">
      <h3>{props.title}</h3>
      <dl className={`jp-AFDagDetails-values ${props.className}`}>
        {entries.map(([key, value]) => (
          <React.Fragment key={key}>
            <dt>{key}</dt>
            <dd>
              {flatValues(value).map((v, i) => {
                const rel = workspacePath(ws, v);
                return (
                  <div key={i} className="jp-AFDagDetails-value">
                    <code title={show(v)} className={rel ? 'mod-path' : undefined}>
                      {rel ? `${WS_PREFIX}${rel}` : show(v)}
                    </code>
                    {rel && (
                      <button
                        className="jp-AFDagDetails-download"
                        title={props.trans.__('Download %1 from the run’s workspace', rel)}
                        onClick={() => props.download(rel)}
                      >
                        {props.trans.__('Download')}
                      </button>
                    )}
                  </div>
                );
              })}
            </dd>
          </React.Fragment>
        ))}
      </dl>
    </section>
  );
}

const time = (ms: number | null | undefined) => (ms ? new Date(ms).toLocaleTimeString() : '—');

export interface NodeDetailsProps {
  client: GatewayClient;
  run: WorkflowRun | null;
  runId: string;
  node: WorkflowNode;
  /** The subworkflow the node lives in ('' at the top), and the case that chose it (on its init). */
  scope?: string;
  scopeCase?: number;
  now: number;
  download(rel: string): void;
  close(): void;
  trans: TranslationBundle;
}

export function NodeDetails(props: NodeDetailsProps): JSX.Element {
  const { node, trans } = props;
  const st = node.state.toLowerCase();
  const duration = node.started ? formatUptime((node.finished ?? props.now) - node.started) : '—';
  /** The step's outputs or parameters, their files downloadable. */
  const valueList = (title: string, values: unknown, className: string) => (
    <ValueList title={title} values={values as Record<string, unknown>} run={props.run} download={props.download} trans={trans} className={className} />
  );
  return (
    <aside className="jp-AFDagDetails" data-node={node.id} aria-label={trans.__('Step %1', node.id)}>
      <header className="jp-AFDagDetails-header">
        <h2 title={node.id}>{node.id}</h2>
        <span className={`jp-AFWorkflows-status mod-${st}`}>{node.state}</span>
        <button className="jp-AFDagDetails-close" aria-label={trans.__('Close')} title={trans.__('Close')} onClick={props.close}>
          ×
        </button>
      </header>
      <div className="jp-AFDagDetails-body">
        {node.message && <div className={`jp-AFDagDetails-message${node.state === 'FAILED' ? ' mod-failed' : ''}`}>{node.message}</div>}
        <dl className="jp-AFDagDetails-facts">
          <dt>{trans.__('Stage')}</dt>
          <dd>{node.stage}</dd>
          {props.scope && (
            <>
              <dt>{trans.__('Subworkflow')}</dt>
              <dd className="jp-AFDagDetails-scope">
                {props.scopeCase != null ? trans.__('%1, chosen by case %2', props.scope, String(props.scopeCase)) : props.scope}
              </dd>
            </>
          )}
          {node.case != null && (
            <>
              <dt>{trans.__('Case')}</dt>
              <dd className="jp-AFDagDetails-case" title={trans.__('The case of stage %1 (counted from 0) whose condition chose this', node.stage)}>
                {trans.__('case %1', String(node.case))}
              </dd>
            </>
          )}
          <dt>{trans.__('Attempts')}</dt>
          <dd className="jp-AFDagDetails-attempts">{node.attempts}</dd>
          <dt>{trans.__('Exit code')}</dt>
          <dd className="jp-AFDagDetails-exitCode">{node.exit_code ?? '—'}</dd>
          <dt>{trans.__('Started')}</dt>
          <dd>{time(node.started)}</dd>
          <dt>{trans.__('Finished')}</dt>
          <dd>{time(node.finished)}</dd>
          <dt>{trans.__('Duration')}</dt>
          <dd>{duration}</dd>
          <dt>{trans.__('Job')}</dt>
          <dd className="jp-AFDagDetails-job">{node.job || '—'}</dd>
          {node.image && (
            <>
              <dt>{trans.__('Image')}</dt>
              <dd>{node.image}</dd>
            </>
          )}
          {node.workdir && (
            <>
              <dt>{trans.__('Workdir')}</dt>
              <dd>
                <code title={node.workdir}>
                  {workspacePath(props.run?.workspace ?? '', node.workdir) !== null
                    ? `${WS_PREFIX}${workspacePath(props.run?.workspace ?? '', node.workdir)}`
                    : node.workdir}
                </code>
              </dd>
            </>
          )}
          {props.run?.workspace && (
            <>
              <dt>{trans.__('Workspace')}</dt>
              <dd className="jp-AFDagDetails-workspace">
                <code>{props.run.workspace}</code>
              </dd>
            </>
          )}
        </dl>
        {valueList(trans.__('Outputs'), node.outputs, 'mod-outputs')}
        {node.registered && node.registered.length > 0 && (
          <section className="jp-AFDagDetails-section jp-AFDagDetails-registered">
            <h3 title={trans.__("Files of this step its stage's register put into Rucio (their DIDs)")}>{trans.__('Registered in Rucio')}</h3>
            <ul>
              {node.registered.map((did) => (
                <li key={did}>
                  <code>{did}</code>
                </li>
              ))}
            </ul>
          </section>
        )}
        {!isInitStage(node.stage) && <LogView client={props.client} runId={props.runId} node={node} trans={trans} />}
        {valueList(trans.__('Parameters'), node.parameters, 'mod-parameters')}
        {node.command && (
          <section className="jp-AFDagDetails-section">
            <h3>{trans.__('Command')}</h3>
            <pre className="jp-AFDagDetails-command">{node.command}</pre>
          </section>
        )}
      </div>
    </aside>
  );
}
