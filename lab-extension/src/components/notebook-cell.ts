// Puts code into a notebook for the user: the connect code of a cluster, a dataset's file list.
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { type INotebookTracker, NotebookActions, type NotebookPanel } from '@jupyterlab/notebook';

/** Puts `code` into a new cell of the active notebook (or of a new one), below the active cell. */
export async function insertCodeCell(app: JupyterFrontEnd, notebooks: INotebookTracker | null, code: string): Promise<void> {
  // The active notebook; else the one last focused; else any open one (focus may be in a sidebar).
  let panel: NotebookPanel | null = notebooks?.currentWidget ?? notebooks?.find(() => true) ?? null;
  if (!panel) panel = (await app.commands.execute('notebook:create-new', { kernelName: 'python3' })) as NotebookPanel;
  await panel.context.ready;
  app.shell.activateById(panel.id);
  const nb = panel.content;
  const active = nb.activeCell;
  if (!active || active.model.sharedModel.getSource().trim() !== '') NotebookActions.insertBelow(nb);
  nb.activeCell?.model.sharedModel.setSource(code);
}
