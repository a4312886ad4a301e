// A left-sidebar panel of ours, restored with the layout.
import type { ILayoutRestorer, JupyterFrontEnd } from '@jupyterlab/application';
import type { LabIcon } from '@jupyterlab/ui-components';
import type { Widget } from '@lumino/widgets';

export interface SidebarPlacement {
  id: string;
  icon: LabIcon;
  caption: string;
  rank: number;
}

export function addSidebarPanel(app: JupyterFrontEnd, restorer: ILayoutRestorer | null, widget: Widget, place: SidebarPlacement): void {
  widget.id = place.id;
  widget.title.icon = place.icon;
  widget.title.caption = place.caption;
  app.shell.add(widget, 'left', { rank: place.rank });
  restorer?.add(widget, place.id);
}
