// The "Run workflow" dialog's form (one field per init parameter the gateway found, name, backend,
// retries) and the list of problems of a workflow the gateway refused.
import type { TranslationBundle } from '@jupyterlab/translation';
import { HTMLSelect } from '@jupyterlab/ui-components';
import React from 'react';
import type { FormProps } from '../../components/dialog-body';
import { TextRow } from '../../components/form-parts';
import type { RunFormValue } from './workflow-bundle';

export interface RunFormOptions {
  entry: string;
  stages: string[];
  backends: string[];
  /** The name a run gets when the form's is empty: the workflow's directory name. */
  defaultName: string;
  trans: TranslationBundle;
}

/** A form component bound to what the validation told (FormDialogBody renders it). */
export function makeRunForm(opts: RunFormOptions): React.ComponentType<FormProps<RunFormValue>> {
  const { trans } = opts;
  return function RunForm({ value, onChange, showProblems }: FormProps<RunFormValue>): JSX.Element {
    const set = (patch: Partial<RunFormValue>) => onChange({ ...value, ...patch });
    const params = Object.keys(value.parameters);
    return (
      <div className="jp-AFDialog-form jp-AFWorkflowRun-form">
        <p className="jp-AFWorkflowRun-summary">{trans.__('%1: stages %2', opts.entry, opts.stages.join(' → ') || '—')}</p>
        {params.length > 0 && <div className="jp-AFWorkflowRun-section">{trans.__('Parameters')}</div>}
        {params.map((name) => (
          <div className={`jp-AFDialog-row${showProblems && !(value.parameters[name] ?? '').trim() ? ' mod-invalid' : ''}`} key={name}>
            <label htmlFor={`af-wf-param-${name}`}>{name}</label>
            <input
              id={`af-wf-param-${name}`}
              className="jp-mod-styled jp-AFWorkflowRun-param"
              data-parameter={name}
              value={value.parameters[name] ?? ''}
              onChange={(e) => set({ parameters: { ...value.parameters, [name]: e.target.value } })}
            />
          </div>
        ))}
        {params.length > 0 && (
          <span className="jp-AFDialog-hint jp-AFWorkflowRun-hint">
            {trans.__('Numbers are sent as numbers, [..] and {..} as JSON, anything else as text.')}
          </span>
        )}
        <div className="jp-AFWorkflowRun-section">{trans.__('Run')}</div>
        <TextRow
          id="af-wf-name"
          label={trans.__('Name')}
          value={value.name}
          onChange={(name) => set({ name })}
          hint={
            value.name.trim() === opts.defaultName
              ? trans.__('The name of the workflow’s directory')
              : trans.__('Empty: %1, the name of the workflow’s directory', opts.defaultName)
          }
        />
        <div className="jp-AFDialog-row">
          <label htmlFor="af-wf-backend">{trans.__('Backend')}</label>
          <HTMLSelect
            id="af-wf-backend"
            value={value.backend}
            onChange={(e) => set({ backend: e.target.value })}
            options={[
              { value: '', label: opts.backends.length ? trans.__('Gateway default (%1)', opts.backends[0]!) : trans.__('Gateway default') },
              ...opts.backends,
            ]}
          />
        </div>
        <div className="jp-AFDialog-row">
          <label htmlFor="af-wf-retries">{trans.__('Retries')}</label>
          <input
            id="af-wf-retries"
            className="jp-mod-styled"
            type="number"
            min={0}
            max={5}
            step={1}
            value={value.retries}
            onChange={(e) => set({ retries: e.target.value })}
          />
          <span className="jp-AFDialog-hint">{trans.__('How often a failed step is started again (0–5; empty: the gateway’s default)')}</span>
        </div>
      </div>
    );
  };
}

export interface SpecProblem {
  path: string;
  file?: string;
  message: string;
}

/** The problems of a refused workflow, each at its JSON path and file. */
export function ProblemList(props: { problems: SpecProblem[]; trans: TranslationBundle }): JSX.Element {
  return (
    <div className="jp-AFWorkflowRun-problems">
      <p>{props.trans._n('The workflow has %1 problem:', 'The workflow has %1 problems:', props.problems.length)}</p>
      <ul>
        {props.problems.map((p, i) => (
          <li key={i} className="jp-AFWorkflowRun-problem">
            <code className="jp-AFWorkflowRun-problemPath">{p.path}</code>
            {p.file && <span className="jp-AFWorkflowRun-problemFile">{p.file}</span>}
            <div className="jp-AFWorkflowRun-problemMessage">{p.message}</div>
          </li>
        ))}
      </ul>
    </div>
  );
}
