// A dialog body backed by React state whose value the dialog reads on accept, and which disables
// the dialog's accept button while the form is invalid; and the dialog that asks for such a form.
import { Dialog, ReactWidget, showDialog } from '@jupyterlab/apputils';
import React from 'react';

export interface FormProps<T> {
  value: T;
  onChange: (value: T) => void;
}

export class FormDialogBody<T> extends ReactWidget implements Dialog.IBodyWidget<T> {
  private value: T;

  constructor(
    initial: T,
    private readonly Form: React.ComponentType<FormProps<T>>,
    private readonly validate: (value: T) => string | null,
  ) {
    super();
    this.value = initial;
    this.addClass('jp-AFDialog');
  }

  getValue(): T {
    return this.value;
  }

  /** The problem with the current value, if any. */
  problem(): string | null {
    return this.validate(this.value);
  }

  protected override onAfterAttach(msg: import('@lumino/messaging').Message): void {
    super.onAfterAttach(msg);
    this.syncAcceptButton();
  }

  private syncAcceptButton(): void {
    const accept = this.node.closest('.jp-Dialog-content')?.querySelector<HTMLButtonElement>('.jp-Dialog-button.jp-mod-accept');
    if (accept) accept.disabled = this.problem() !== null;
  }

  render(): JSX.Element {
    const Form = this.Form;
    const problem = this.problem();
    return (
      <>
        <Form
          value={this.value}
          onChange={(v) => {
            this.value = v;
            this.update();
            this.syncAcceptButton();
          }}
        />
        <div className={`jp-AFDialog-problem${problem ? ' mod-visible' : ''}`} role="alert">
          {problem ?? ''}
        </div>
      </>
    );
  }
}

export interface FormDialogOptions<T> {
  title: string;
  /** What the form starts with. */
  value: T;
  Form: React.ComponentType<FormProps<T>>;
  validate: (value: T) => string | null;
  /** The accept button's label. */
  accept: string;
}

/** Shows the form until the user cancels (null) or accepts a valid value (Enter may accept an invalid one: then it asks again). */
export async function askForm<T>(opts: FormDialogOptions<T>): Promise<T | null> {
  let value = opts.value;
  for (;;) {
    const body = new FormDialogBody<T>(value, opts.Form, opts.validate);
    const res = await showDialog({ title: opts.title, body, buttons: [Dialog.cancelButton(), Dialog.okButton({ label: opts.accept })] });
    if (!res.button.accept || !res.value) return null;
    value = res.value;
    if (opts.validate(value) === null) return value;
  }
}
