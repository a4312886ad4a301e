// The Rucio panel's dialogs: "Make available" (a rule: RSE expression and lifetime) and "Register
// outputs" (files already written to an RSE, attached to a dataset).
import React from 'react';
import type { FormProps } from '../../components/dialog-body';
import { TextRow, textFields } from '../../components/form-parts';
import { parseRegisterFiles } from './rucio-files';

export interface MakeAvailableValue {
  rseExpression: string;
  lifetimeDays: number;
}

export function validateMakeAvailable(v: MakeAvailableValue): string | null {
  if (!v.rseExpression.trim()) return 'Give an RSE or an RSE expression, e.g. SITE-B_DISK';
  if (!(v.lifetimeDays > 0)) return 'The lifetime must be more than 0 days';
  return null;
}

export function MakeAvailableForm({ value, onChange }: FormProps<MakeAvailableValue>): JSX.Element {
  const set = (patch: Partial<MakeAvailableValue>) => onChange({ ...value, ...patch });
  const field = textFields(value, onChange);
  const rseHint = 'Where the dataset should be kept: an RSE name or an expression such as tier=2&type=DISK';
  return (
    <div className="jp-AFDialog-form jp-AFRucio-form">
      <TextRow id="af-rucio-rse" label="RSE expression" placeholder="e.g. SITE-B_DISK" {...field('rseExpression')} hint={rseHint} />
      <div className="jp-AFDialog-row">
        <label htmlFor="af-rucio-lifetime">Lifetime (days)</label>
        <input
          id="af-rucio-lifetime"
          className="jp-mod-styled"
          type="number"
          min={0}
          step={1}
          value={Number.isNaN(value.lifetimeDays) ? '' : value.lifetimeDays}
          onChange={(e) => set({ lifetimeDays: e.target.value === '' ? Number.NaN : Number(e.target.value) })}
        />
        <span className="jp-AFDialog-hint">The rule, and the copy it made, go away after this</span>
      </div>
    </div>
  );
}

export interface RegisterValue {
  rse: string;
  scope: string;
  name: string;
  files: string;
}

export function validateRegister(v: RegisterValue): string | null {
  if (!v.rse.trim()) return 'Give the RSE the files were written to';
  if (!v.scope.trim() || !v.name.trim()) return 'Give the dataset: its scope (e.g. user.alice) and name';
  return parseRegisterFiles(v.files).problem;
}

export function RegisterForm({ value, onChange }: FormProps<RegisterValue>): JSX.Element {
  const set = (patch: Partial<RegisterValue>) => onChange({ ...value, ...patch });
  const field = textFields(value, onChange);
  return (
    <div className="jp-AFDialog-form jp-AFRucio-form">
      <TextRow id="af-register-rse" label="RSE" placeholder="e.g. SITE-A_SCRATCHDISK" {...field('rse')} />
      <TextRow id="af-register-scope" label="Dataset scope" placeholder="e.g. user.alice" {...field('scope')} />
      <TextRow id="af-register-name" label="Dataset name" placeholder="e.g. ds.my.outputs" {...field('name')} hint="Created when it does not exist yet" />
      <div className="jp-AFDialog-row">
        <label htmlFor="af-register-files">Files</label>
        <textarea
          id="af-register-files"
          className="jp-mod-styled jp-AFRucio-filesInput"
          rows={6}
          placeholder={'e.g.\nhist.0001.root 1234 0a1b2c3d\nhist.0002.root 5678 0f1e2d3c'}
          value={value.files}
          onChange={(e) => set({ files: e.target.value })}
        />
        <span className="jp-AFDialog-hint">One &quot;name bytes adler32&quot; a line, or a JSON list of {'{name, bytes, adler32}'}</span>
      </div>
    </div>
  );
}
