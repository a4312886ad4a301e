// The Rucio panel as a plugin: the sidebar panel (search), the dataset browsers it opens in the main
// area and their actions (copy PFNs, put a file list into a notebook, make a dataset available on an
// RSE), and registering outputs.
import { Dialog, MainAreaWidget, Notification, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import type { RucioRegisterRequest } from '@af-gateway/schemas';
import { askForm } from '../../components/dialog-body';
import { errorText } from '../../components/format';
import { insertCodeCell } from '../../components/notebook-cell';
import { type PanelContext, panelPlugin } from '../../components/panel-plugin';
import { rucioIcon } from '../../icons';
import { type DatasetTarget, DatasetModel } from './dataset-model';
import { type DatasetActions, DatasetWidget } from './dataset-view';
import { copyProblem, fileListCell, parseRegisterFiles, pfnList } from './rucio-files';
import { type MakeAvailableValue, MakeAvailableForm, type RegisterValue, RegisterForm, validateMakeAvailable, validateRegister } from './rucio-forms';
import { RucioModel } from './rucio-model';
import { RucioPanel } from './rucio-panel';

export const RucioCommandIds = {
  openRucio: 'af:open-rucio',
  openDataset: 'af:open-rucio-dataset',
  insertFileList: 'af:insert-file-list',
} as const;

function activate({ app, session, trans, addSidebar, addToPalette, mainAreaWidgets }: PanelContext, notebooks: INotebookTracker | null): void {
  const { commands, shell } = app;
  const { client, settings } = session;
  const model = new RucioModel(session, { instance: settings.rucioInstance, scheme: settings.rucioScheme });

  /** The PFNs of the rows an action works on (selected, else all shown); files without one are counted and said. */
  const targetPfns = (ds: DatasetModel) => {
    const rows = ds.table.targetRows();
    const { pfns, missing } = pfnList(rows);
    if (missing)
      Notification.warning(trans.__('%1 of %2 files have no %3 replica: they are left out.', String(missing), String(rows.length), ds.scheme), {
        autoClose: 10000,
      });
    return pfns;
  };

  const copy = async (text: string, what: string) => {
    try {
      await navigator.clipboard.writeText(text);
      Notification.success(trans.__('Copied %1', what), { autoClose: 4000 });
    } catch (err) {
      await showErrorMessage(trans.__('Nothing was copied'), errorText(err));
    }
  };

  const copyPfns = async (ds: DatasetModel) => {
    const pfns = targetPfns(ds);
    await copy(pfns.join('\n') + (pfns.length ? '\n' : ''), trans.__('%1 %2 PFNs of %3', String(pfns.length), ds.scheme, ds.did));
  };

  const insertFileList = async (ds: DatasetModel) => {
    const pfns = targetPfns(ds);
    await insertCodeCell(app, notebooks, fileListCell(pfns, ds.did, ds.scheme));
  };

  const makeAvailable = async (ds: DatasetModel) => {
    const initial: MakeAvailableValue = { rseExpression: '', lifetimeDays: 7 };
    const value = await askForm({
      title: trans.__('Make %1 available', ds.did),
      value: initial,
      Form: MakeAvailableForm,
      validate: validateMakeAvailable,
      accept: trans.__('Create rule'),
    });
    if (!value) return;
    try {
      await ds.makeAvailable(value.rseExpression.trim(), value.lifetimeDays);
    } catch (err) {
      await showErrorMessage(trans.__('No rule was created'), errorText(err));
    }
  };

  // --- dataset browsers in the main area, one per dataset -----------------------------------------
  const browsers = mainAreaWidgets<MainAreaWidget<DatasetWidget>>('af-rucio-dataset', RucioCommandIds.openDataset);
  const datasetActions: DatasetActions = {
    copyPfns: (ds) => void copyPfns(ds),
    insertFileList: (ds) => void insertFileList(ds),
    makeAvailable: (ds) => void makeAvailable(ds),
    // (one value of a row: a DID or a PFN, never more than one line)
    copy: (text, what) => {
      const problem = copyProblem(text);
      if (problem) void showErrorMessage(trans.__('Nothing was copied'), trans.__('%1 was not copied: %2', what, problem));
      else void copy(text, what);
    },
  };
  /** The browser the palette's "Insert file list" works on: the current one, else the last opened. */
  const currentBrowser = (): DatasetModel | null => {
    const w = browsers.tracker.currentWidget;
    return w && !w.isDisposed ? w.content.model : null;
  };

  const openDataset = (target: DatasetTarget): MainAreaWidget<DatasetWidget> => {
    const id = browserId(target.instance, target.scope, target.name);
    const existing = browsers.find(id);
    if (existing) {
      shell.activateById(existing.id);
      return existing;
    }
    const ds = new DatasetModel(session, target, model.scheme);
    const widget = new MainAreaWidget({ content: new DatasetWidget(ds, datasetActions, trans) });
    widget.id = id;
    widget.title.label = ds.did;
    widget.title.caption = trans.__('Rucio %1 %2 (instance %3)', target.type.toLowerCase(), ds.did, target.instance);
    widget.title.icon = rucioIcon;
    widget.title.closable = true;
    browsers.add(widget, { instance: target.instance, scope: target.scope, name: target.name, type: target.type });
    shell.add(widget, 'main');
    shell.activateById(widget.id);
    void ds.load();
    return widget;
  };

  const registerOutputs = async () => {
    const initial: RegisterValue = { rse: '', scope: '', name: '', files: '' };
    const value = await askForm({
      title: trans.__('Register outputs in Rucio (%1)', model.instance),
      value: initial,
      Form: RegisterForm,
      validate: validateRegister,
      accept: trans.__('Register'),
    });
    if (!value) return;
    const files = parseRegisterFiles(value.files).files;
    try {
      const done = await client.rucioRegister(model.instance, {
        rse: value.rse.trim(),
        dataset: { scope: value.scope.trim(), name: value.name.trim() },
        files: files as RucioRegisterRequest['files'],
      });
      await showDialog({
        title: trans.__('Outputs registered'),
        body: trans.__(
          '%1 files registered on %2 in %3:%4 (%5).',
          String(done.files),
          done.rse,
          done.dataset.scope,
          done.dataset.name,
          done.created ? trans.__('a new dataset') : trans.__('an existing dataset'),
        ),
        buttons: [Dialog.okButton()],
      });
    } catch (err) {
      await showErrorMessage(trans.__('The outputs were not registered'), errorText(err));
    }
  };

  const panel = new RucioPanel(
    model,
    {
      openDataset: (node) =>
        void openDataset({ instance: model.instance, scope: node.scope, name: node.name, type: node.type, length: node.length, bytes: node.bytes }),
      registerOutputs: () => void registerOutputs(),
      login: () => session.logIn(),
    },
    trans,
  );
  const open = { command: RucioCommandIds.openRucio, label: trans.__('Show Rucio Data') };
  addSidebar(panel, { id: 'af-rucio', icon: rucioIcon, caption: trans.__('Rucio data (AF Gateway)'), rank: 202 }, open);

  commands.addCommand(RucioCommandIds.openDataset, {
    label: (args) => trans.__('Open Rucio Dataset %1:%2', String(args.scope ?? ''), String(args.name ?? '')),
    execute: (args) => {
      const [instance, scope, name] = [args.instance, args.scope, args.name].map((a) => (typeof a === 'string' ? a : ''));
      if (!instance || !scope || !name) return;
      return openDataset({ instance, scope, name, type: typeof args.type === 'string' ? args.type : 'DATASET' });
    },
  });
  commands.addCommand(RucioCommandIds.insertFileList, {
    label: trans.__('Insert File List of the Rucio Dataset (its selected files, else all shown)'),
    isEnabled: () => {
      const ds = currentBrowser();
      return ds !== null && !ds.loading && ds.rows.length > 0;
    },
    execute: () => {
      const ds = currentBrowser();
      if (!ds) return showErrorMessage(trans.__('No dataset open'), trans.__('Open a dataset from the Rucio panel first.'));
      return insertFileList(ds);
    },
  });
  addToPalette(RucioCommandIds.insertFileList);
  // The panel loads when it is first shown; the model asks again after a (Hub) login.
}

/** A browser's widget id: readable, and unique per instance and DID (a hash tells apart names the cleaning makes equal). */
export function browserId(instance: string, scope: string, name: string): string {
  const key = `${instance}\n${scope}:${name}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0;
  return `af-rucio-ds-${`${scope}-${name}`.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 80)}-${h.toString(16)}`;
}

export const rucioPlugin = panelPlugin({
  id: '@af-gateway/lab-extension:rucio',
  description: 'AF Gateway: the Rucio data panel and its dataset actions.',
  optional: [INotebookTracker],
  activate: (ctx, notebooks) => activate(ctx, notebooks as INotebookTracker | null),
});
