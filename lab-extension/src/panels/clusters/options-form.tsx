// The New cluster form, generated from the gateway's options spec (GET /api/v1/options).
import type { Field } from '@af-gateway/schemas';
import { HTMLSelect } from '@jupyterlab/ui-components';
import React from 'react';
import type { FormProps } from '../../components/dialog-body';
import { DISPLAY_NAME_OPTION, validateOption } from './clusters-model';

export type OptionValues = Record<string, unknown>;

function FieldInput(props: { field: Field; value: unknown; onChange: (v: unknown) => void }): JSX.Element {
  const { field, value, onChange } = props;
  const id = `af-option-${field.field}`;
  const spec = field.spec;
  switch (spec.type) {
    case 'int':
    case 'float':
      return (
        <input
          id={id}
          className="jp-mod-styled"
          type="number"
          step={spec.type === 'int' ? 1 : 'any'}
          min={spec.min ?? undefined}
          max={spec.max ?? undefined}
          value={typeof value === 'number' && !Number.isNaN(value) ? value : ''}
          onChange={(e) => onChange(e.target.value === '' ? Number.NaN : Number(e.target.value))}
        />
      );
    case 'select':
      return <HTMLSelect id={id} value={String(value ?? '')} onChange={(e) => onChange(e.target.value)} options={spec.options ?? []} />;
    case 'bool':
      return <input id={id} type="checkbox" checked={value === true} onChange={(e) => onChange(e.target.checked)} />;
    case 'string':
      return (
        <input
          id={id}
          className="jp-mod-styled"
          type="text"
          // the cluster's name is optional: the example says what it is for
          placeholder={field.field === DISPLAY_NAME_OPTION ? 'optional, e.g. ttbar skim 2018' : undefined}
          value={String(value ?? '')}
          onChange={(e) => onChange(e.target.value)}
        />
      );
    case 'mapping':
      return <MappingInput id={id} value={value} onChange={onChange} />;
  }
}

/** A mapping edited as KEY=value lines (environment variables, for example). */
function MappingInput(props: { id: string; value: unknown; onChange: (v: unknown) => void }): JSX.Element {
  const mapping = props.value && typeof props.value === 'object' ? (props.value as Record<string, unknown>) : {};
  const text = Object.entries(mapping)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join('\n');
  return (
    <textarea
      id={props.id}
      className="jp-mod-styled"
      rows={3}
      placeholder="NAME=value, one per line"
      defaultValue={text}
      onChange={(e) => {
        const out: Record<string, string> = {};
        for (const line of e.target.value.split('\n')) {
          const eq = line.indexOf('=');
          if (eq > 0) out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
        }
        props.onChange(out);
      }}
    />
  );
}

export function makeOptionsForm(fields: Field[]): React.ComponentType<FormProps<OptionValues>> {
  return function OptionsForm({ value, onChange, showProblems }: FormProps<OptionValues>): JSX.Element {
    if (fields.length === 0) return <p className="jp-AFDialog-note">This gateway offers no options: the cluster starts with its defaults.</p>;
    return (
      <div className="jp-AFDialog-form">
        {fields.map((f) => {
          const problem = showProblems && validateOption(f, value[f.field]);
          return (
            <div key={f.field} className={`jp-AFDialog-row${problem ? ' mod-invalid' : ''}`}>
              <label htmlFor={`af-option-${f.field}`}>{f.label}</label>
              <FieldInput field={f} value={value[f.field]} onChange={(v) => onChange({ ...value, [f.field]: v })} />
              {describeRange(f) && <span className="jp-AFDialog-hint">{describeRange(f)}</span>}
            </div>
          );
        })}
      </div>
    );
  };
}

function describeRange(f: Field): string {
  const { min, max } = f.spec;
  if (min != null && max != null) return `${min} – ${max}`;
  if (min != null) return `≥ ${min}`;
  if (max != null) return `≤ ${max}`;
  return '';
}

export function validateOptions(fields: Field[], value: OptionValues): string | null {
  for (const f of fields) {
    const problem = validateOption(f, value[f.field]);
    if (problem) return problem;
  }
  return null;
}
