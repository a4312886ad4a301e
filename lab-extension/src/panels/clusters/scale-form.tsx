// The Scale dialog: Manual Scaling (a number of workers) or Adaptive Scaling (minimum, maximum).
import React from 'react';
import type { FormProps } from '../../components/dialog-body';
import type { ScaleRequestModel } from './clusters-model';

const num = (s: string) => (s === '' ? Number.NaN : Number(s));

export function ScaleForm({ value, onChange }: FormProps<ScaleRequestModel>): JSX.Element {
  const set = (patch: Partial<ScaleRequestModel>) => onChange({ ...value, ...patch });
  return (
    <div className="jp-AFDialog-form jp-AFScale">
      <label className="jp-AFScale-mode">
        <input type="radio" name="af-scale-mode" checked={value.mode === 'manual'} onChange={() => set({ mode: 'manual' })} />
        Manual Scaling
      </label>
      <div className={`jp-AFDialog-row${value.mode === 'manual' ? '' : ' mod-disabled'}`}>
        <label htmlFor="af-scale-workers">Workers</label>
        <input
          id="af-scale-workers"
          className="jp-mod-styled"
          type="number"
          min={0}
          step={1}
          disabled={value.mode !== 'manual'}
          value={Number.isNaN(value.workers) ? '' : value.workers}
          onChange={(e) => set({ workers: num(e.target.value) })}
        />
      </div>
      <label className="jp-AFScale-mode">
        <input type="radio" name="af-scale-mode" checked={value.mode === 'adaptive'} onChange={() => set({ mode: 'adaptive' })} />
        Adaptive Scaling
      </label>
      <div className={`jp-AFDialog-row${value.mode === 'adaptive' ? '' : ' mod-disabled'}`}>
        <label htmlFor="af-scale-minimum">Minimum</label>
        <input
          id="af-scale-minimum"
          className="jp-mod-styled"
          type="number"
          min={0}
          step={1}
          disabled={value.mode !== 'adaptive'}
          value={Number.isNaN(value.minimum) ? '' : value.minimum}
          onChange={(e) => set({ minimum: num(e.target.value) })}
        />
      </div>
      <div className={`jp-AFDialog-row${value.mode === 'adaptive' ? '' : ' mod-disabled'}`}>
        <label htmlFor="af-scale-maximum">Maximum</label>
        <input
          id="af-scale-maximum"
          className="jp-mod-styled"
          type="number"
          min={0}
          step={1}
          disabled={value.mode !== 'adaptive'}
          value={Number.isNaN(value.maximum) ? '' : value.maximum}
          onChange={(e) => set({ maximum: num(e.target.value) })}
        />
      </div>
    </div>
  );
}
