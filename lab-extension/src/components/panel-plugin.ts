// What every panel plugin of ours does the same way: it asks for the session, the translator, the
// palette and the layout restorer (plus the optional services it names), puts its panel in the left
// sidebar (restored with the layout) and lists its commands in the palette under one category.
import { ILayoutRestorer, type JupyterFrontEnd, type JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, WidgetTracker } from '@jupyterlab/apputils';
import { ITranslator, nullTranslator, type TranslationBundle } from '@jupyterlab/translation';
import type { LabIcon } from '@jupyterlab/ui-components';
import type { ReadonlyJSONObject, Token } from '@lumino/coreutils';
import type { Widget } from '@lumino/widgets';
import { IAfGatewaySession } from '../session/tokens';

export const CATEGORY = 'AF Gateway';

export interface SidebarPlacement {
  id: string;
  icon: LabIcon;
  caption: string;
  rank: number;
}

/** The command that shows a sidebar panel (listed in the palette, with the panel's icon). */
export interface OpenCommand {
  command: string;
  label: string;
}

/** Main-area widgets of one kind; on a layout restore each is opened again by a command with its arguments. */
export class RestoredWidgets<T extends Widget> {
  readonly tracker: WidgetTracker<T>;
  private readonly args = new WeakMap<T, ReadonlyJSONObject>();

  constructor(namespace: string, command: string, restorer: ILayoutRestorer | null) {
    this.tracker = new WidgetTracker<T>({ namespace });
    void restorer?.restore(this.tracker, { command, args: (w) => this.args.get(w) ?? {}, name: (w) => w.id });
  }

  /** Tracks `widget`, opened by the command with `args`. */
  add(widget: T, args: ReadonlyJSONObject): void {
    this.args.set(widget, args);
    void this.tracker.add(widget);
  }

  find(id: string): T | undefined {
    return this.tracker.find((w) => w.id === id) ?? undefined;
  }
}

export interface PanelContext {
  app: JupyterFrontEnd;
  session: IAfGatewaySession;
  trans: TranslationBundle;
  /** Main-area widgets of one kind, restored with the layout by `command`. */
  mainAreaWidgets<T extends Widget>(namespace: string, command: string): RestoredWidgets<T>;
  /** Adds `widget` to the left sidebar with our id, icon and caption, restored with the layout, and its command that shows it. */
  addSidebar(widget: Widget, place: SidebarPlacement, open: OpenCommand): void;
  /** Lists commands (with their arguments, if any) in the palette under the AF Gateway category. */
  addToPalette(...items: (string | { command: string; args: ReadonlyJSONObject })[]): void;
}

export interface PanelPluginSpec {
  id: string;
  description: string;
  /** Services beyond the common ones; `activate` gets them in this order (null when absent). */
  optional?: Token<unknown>[];
  /** Sets the panel up; the model it returns is started once the session is ready. */
  activate(ctx: PanelContext, ...services: unknown[]): { start(): Promise<void> } | void;
}

export function panelPlugin(spec: PanelPluginSpec): JupyterFrontEndPlugin<void> {
  return {
    id: spec.id,
    description: spec.description,
    autoStart: true,
    requires: [IAfGatewaySession],
    optional: [ITranslator, ICommandPalette, ILayoutRestorer, ...(spec.optional ?? [])],
    activate: (
      app: JupyterFrontEnd,
      session: IAfGatewaySession,
      translator: ITranslator | null,
      palette: ICommandPalette | null,
      restorer: ILayoutRestorer | null,
      ...services: unknown[]
    ) => {
      const ctx: PanelContext = {
        app,
        session,
        trans: (translator ?? nullTranslator).load('af_gateway_lab'),
        mainAreaWidgets: (namespace, command) => new RestoredWidgets(namespace, command, restorer),
        addSidebar: (widget, place, open) => {
          widget.id = place.id;
          widget.title.icon = place.icon;
          widget.title.caption = place.caption;
          app.shell.add(widget, 'left', { rank: place.rank });
          restorer?.add(widget, place.id);
          app.commands.addCommand(open.command, { label: open.label, icon: place.icon, execute: () => app.shell.activateById(widget.id) });
          palette?.addItem({ command: open.command, category: CATEGORY });
        },
        addToPalette: (...items) => {
          for (const item of items) palette?.addItem(typeof item === 'string' ? { command: item, category: CATEGORY } : { ...item, category: CATEGORY });
        },
      };
      const model = spec.activate(ctx, ...services);
      if (model) void session.ready.then(() => model.start());
    },
  };
}
