// The Scale dialog: Manual Scaling (a number of workers) or Adaptive Scaling (minimum, maximum).
import React from 'react';
import type { FormProps } from '../../components/dialog-body';
import type { ScaleRequestModel } from './clusters-model';

const num = (s: string) => (s === '' ? Number.NaN : Number(s));

type Mode = ScaleRequestModel['mode'];
type Count = 'workers' | 'minimum' | 'maximum';
/** What every part of the form gets: the request so far and a way to change it. */
interface Part {
  value: ScaleRequestModel;
  set: (patch: Partial<ScaleRequestModel>) => void;
}

/** One number of the form: a labelled input, greyed out and disabled unless its mode is chosen. */
function CountRow({ field, label, mode, value, set }: Part & { field: Count; label: string; mode: Mode }): JSX.Element {
  const off = value.mode !== mode;
  const id = `af-scale-${field}`;
  return (
    <div className={`jp-AFDialog-row${off ? ' mod-disabled' : ''}`}>
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        className="jp-mod-styled"
        type="number"
        min={0}
        step={1}
        disabled={off}
        value={Number.isNaN(value[field]) ? '' : value[field]}
        onChange={(e) => set({ [field]: num(e.target.value) })}
      />
    </div>
  );
}

/** A radio button choosing a mode. */
function ModeChoice({ mode, label, value, set }: Part & { mode: Mode; label: string }): JSX.Element {
  return (
    <label className="jp-AFScale-mode">
      <input type="radio" name="af-scale-mode" checked={value.mode === mode} onChange={() => set({ mode })} />
      {label}
    </label>
  );
}

export function ScaleForm({ value, onChange }: FormProps<ScaleRequestModel>): JSX.Element {
  const set = (patch: Partial<ScaleRequestModel>) => onChange({ ...value, ...patch });
  const shared: Part = { value, set };
  return (
    <div className="jp-AFDialog-form jp-AFScale">
      <ModeChoice mode="manual" label="Manual Scaling" {...shared} />
      <CountRow field="workers" label="Workers" mode="manual" {...shared} />
      <ModeChoice mode="adaptive" label="Adaptive Scaling" {...shared} />
      <CountRow field="minimum" label="Minimum" mode="adaptive" {...shared} />
      <CountRow field="maximum" label="Maximum" mode="adaptive" {...shared} />
    </div>
  );
}
