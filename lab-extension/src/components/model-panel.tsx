// A sidebar panel that draws its model with a React view and draws it again whenever the model
// says it changed.
import { ReactWidget, UseSignal } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import type { ISignal } from '@lumino/signaling';
import React from 'react';

export interface ModelViewProps<M, A> {
  model: M;
  actions: A;
  trans: TranslationBundle;
}

export class ModelPanel<M extends { readonly changed: ISignal<unknown, void> }, A> extends ReactWidget {
  constructor(
    protected readonly model: M,
    private readonly actions: A,
    private readonly trans: TranslationBundle,
    className: string,
    private readonly View: React.ComponentType<ModelViewProps<M, A>>,
  ) {
    super();
    this.addClass(className);
  }

  render(): JSX.Element {
    const View = this.View;
    return <UseSignal signal={this.model.changed}>{() => <View model={this.model} actions={this.actions} trans={this.trans} />}</UseSignal>;
  }
}
