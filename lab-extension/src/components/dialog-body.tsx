// A dialog body backed by React state whose value the dialog reads on accept, and the dialog that
// asks for such a form. A problem with the value is shown once the user has touched a field (changed
// it and left it, or picked something) or tried to accept; until then the form shows no red. The
// accept button stays enabled: accepting an invalid form shows its problem instead of closing.
import { Dialog, ReactWidget, showDialog } from '@jupyterlab/apputils';
import type { Message } from '@lumino/messaging';
import React from 'react';

export interface FormProps<T> {
  value: T;
  onChange: (value: T) => void;
  /** Whether the form should mark what is wrong (a field was touched or accepting was tried). */
  showProblems?: boolean;
}

/** Fields whose every change is a finished choice (not typing). */
const isChoice = (el: EventTarget | null): boolean =>
  el instanceof HTMLSelectElement || (el instanceof HTMLInputElement && (el.type === 'checkbox' || el.type === 'radio'));

export class FormDialogBody<T> extends ReactWidget implements Dialog.IBodyWidget<T> {
  private value: T;
  /** Fields changed since they were last left (by id or name). */
  private readonly editing = new Set<string>();
  private touched = false;

  constructor(
    initial: T,
    private readonly Form: React.ComponentType<FormProps<T>>,
    private readonly validate: (value: T) => string | null,
    /** Set when accepting was tried already (the form is asked again): problems show at once. */
    private submitted = false,
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

  /** Whether the problem, if any, is shown. */
  get showsProblems(): boolean {
    return this.touched || this.submitted;
  }

  protected override onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    // Before the dialog's own (capturing) handlers: an accept of an invalid form shows the problem.
    document.addEventListener('click', this.onAcceptAttempt, true);
    document.addEventListener('keydown', this.onAcceptAttempt, true);
  }

  protected override onBeforeDetach(msg: Message): void {
    document.removeEventListener('click', this.onAcceptAttempt, true);
    document.removeEventListener('keydown', this.onAcceptAttempt, true);
    super.onBeforeDetach(msg);
  }

  override dispose(): void {
    document.removeEventListener('click', this.onAcceptAttempt, true);
    document.removeEventListener('keydown', this.onAcceptAttempt, true);
    super.dispose();
  }

  private readonly onAcceptAttempt = (ev: Event): void => {
    const dialog = this.node.closest('.jp-Dialog');
    const target = ev.target;
    if (!dialog || !(target instanceof Node) || !dialog.contains(target)) return;
    const accept = dialog.querySelector('.jp-Dialog-button.jp-mod-accept');
    let attempt: boolean;
    if (ev instanceof KeyboardEvent) {
      if (ev.key !== 'Enter') return;
      // Enter in a field or on the accept button accepts (the dialog's rule); a textarea takes it.
      attempt = target instanceof HTMLButtonElement ? target === accept : target instanceof HTMLInputElement || target instanceof HTMLSelectElement;
    } else attempt = !!accept && accept.contains(target);
    if (!attempt || this.problem() === null) return;
    ev.stopPropagation();
    ev.preventDefault();
    this.submitted = true;
    this.update();
  };

  private fieldKey(el: EventTarget | null): string {
    return el instanceof HTMLElement ? el.id || el.getAttribute('name') || '' : '';
  }

  private touch(): void {
    if (this.touched) return;
    this.touched = true;
    this.update();
  }

  render(): JSX.Element {
    const Form = this.Form;
    const problem = this.problem();
    const shown = this.showsProblems && problem !== null;
    return (
      <div
        className="jp-AFDialog-content"
        onChange={(e) => (isChoice(e.target) ? this.touch() : this.editing.add(this.fieldKey(e.target)))}
        onBlur={(e) => {
          if (this.editing.delete(this.fieldKey(e.target))) this.touch();
        }}
      >
        <Form
          value={this.value}
          showProblems={this.showsProblems}
          onChange={(v) => {
            this.value = v;
            this.update();
          }}
        />
        <div className={`jp-AFDialog-problem${shown ? ' mod-visible' : ''}`} role="alert">
          {shown ? problem : ''}
        </div>
      </div>
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

/** Shows the form until the user cancels (null) or accepts a valid value (should an invalid one get through, it asks again, problem shown). */
export async function askForm<T>(opts: FormDialogOptions<T>): Promise<T | null> {
  let value = opts.value;
  for (let attempt = 0; ; attempt++) {
    const body = new FormDialogBody<T>(value, opts.Form, opts.validate, attempt > 0);
    const res = await showDialog({ title: opts.title, body, buttons: [Dialog.cancelButton(), Dialog.okButton({ label: opts.accept })] });
    if (!res.button.accept || !res.value) return null;
    value = res.value;
    if (opts.validate(value) === null) return value;
  }
}
