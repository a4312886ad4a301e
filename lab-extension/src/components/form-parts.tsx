// Small pieces the dialogs share: a labelled text row of a dialog form. (Selects are
// @jupyterlab/ui-components' HTMLSelect, which draws JupyterLab's own caret.)
import React from 'react';

export interface TextRowProps {
  id: string;
  label: string;
  /** An example, written as one ("e.g. …"): a placeholder must not pass for a value. */
  placeholder?: string;
  value: string;
  onChange: (value: string) => void;
  /** Shown under the input. */
  hint?: string;
}

/** For the text fields of a form's value: `field(key)` gives a TextRow the field's value and how to change it. */
export function textFields<T>(value: T, onChange: (next: T) => void) {
  return <K extends { [P in keyof T]: T[P] extends string ? P : never }[keyof T]>(key: K) => ({
    value: value[key] as string,
    onChange: (v: string) => onChange({ ...value, [key]: v }),
  });
}

/** A row of a dialog form: a label and a one-line text input, with an optional hint. */
export function TextRow({ id, label, placeholder, value, onChange, hint }: TextRowProps): JSX.Element {
  return (
    <div className="jp-AFDialog-row">
      <label htmlFor={id}>{label}</label>
      <input id={id} className="jp-mod-styled" placeholder={placeholder} value={value} onChange={(e) => onChange(e.target.value)} />
      {hint && <span className="jp-AFDialog-hint">{hint}</span>}
    </div>
  );
}
