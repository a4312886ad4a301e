// The Rucio panel as a plugin: the sidebar panel, and the actions on the open dataset (copy its
// PFNs, put its file list into a notebook, make it available on an RSE) and registering outputs.
import { Dialog, Notification, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import type { RucioRegisterRequest } from '@af-gateway/schemas';
import { askForm } from '../../components/dialog-body';
import { errorText } from '../../components/format';
import { insertCodeCell } from '../../components/notebook-cell';
import { type PanelContext, panelPlugin } from '../../components/panel-plugin';
import { rucioIcon } from '../../icons';
import { fileListCell, parseRegisterFiles, pfnList } from './rucio-files';
import { type MakeAvailableValue, MakeAvailableForm, type RegisterValue, RegisterForm, validateMakeAvailable, validateRegister } from './rucio-forms';
import { RucioModel } from './rucio-model';
import { RucioPanel } from './rucio-panel';

export const RucioCommandIds = {
  openRucio: 'af:open-rucio',
  insertFileList: 'af:insert-file-list',
} as const;

function activate({ app, session, trans, addSidebar, addToPalette }: PanelContext, notebooks: INotebookTracker | null): void {
  const { commands } = app;
  const { client, settings } = session;
  const model = new RucioModel(session, { instance: settings.rucioInstance, scheme: settings.rucioScheme });

  /** The open dataset's PFNs for the chosen scheme (files without such a replica are left out). */
  const openDatasetPfns = () => {
    if (!model.dataset) return null;
    const { pfns, missing } = pfnList(model.rows);
    if (missing)
      Notification.warning(trans.__('%1 of %2 files have no %3 replica: they are left out.', String(missing), String(model.rows.length), model.scheme), {
        autoClose: 10000,
      });
    return pfns;
  };

  const copyPfns = async () => {
    const pfns = openDatasetPfns();
    if (!pfns) return;
    try {
      await navigator.clipboard.writeText(pfns.join('\n') + (pfns.length ? '\n' : ''));
      Notification.success(trans.__('Copied %1 %2 PFNs of %3', String(pfns.length), model.scheme, model.didLabel), { autoClose: 5000 });
    } catch (err) {
      await showErrorMessage(trans.__('The PFNs were not copied'), errorText(err));
    }
  };

  const insertFileList = async () => {
    const pfns = openDatasetPfns();
    if (!pfns) return showErrorMessage(trans.__('No dataset open'), trans.__('Open a dataset in the Rucio panel first.'));
    await insertCodeCell(app, notebooks, fileListCell(pfns, model.didLabel, model.scheme));
  };

  const makeAvailable = async () => {
    if (!model.dataset) return;
    const initial: MakeAvailableValue = { rseExpression: '', lifetimeDays: 7 };
    const value = await askForm({
      title: trans.__('Make %1 available', model.didLabel),
      value: initial,
      Form: MakeAvailableForm,
      validate: validateMakeAvailable,
      accept: trans.__('Create rule'),
    });
    if (!value) return;
    try {
      await model.makeAvailable(value.rseExpression.trim(), value.lifetimeDays);
    } catch (err) {
      await showErrorMessage(trans.__('No rule was created'), errorText(err));
    }
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
      copyPfns: () => void copyPfns(),
      insertFileList: () => void commands.execute(RucioCommandIds.insertFileList),
      makeAvailable: () => void makeAvailable(),
      registerOutputs: () => void registerOutputs(),
      login: () => session.logIn(),
    },
    trans,
  );
  const open = { command: RucioCommandIds.openRucio, label: trans.__('Show Rucio Data') };
  addSidebar(panel, { id: 'af-rucio', icon: rucioIcon, caption: trans.__('Rucio data (AF Gateway)'), rank: 202 }, open);

  commands.addCommand(RucioCommandIds.insertFileList, {
    label: trans.__('Insert File List of the Open Rucio Dataset'),
    isEnabled: () => model.dataset !== null && model.phase === 'done',
    execute: () => insertFileList(),
  });
  addToPalette(RucioCommandIds.insertFileList);
  // The panel loads when it is first shown; the model asks again after a (Hub) login.
}

export const rucioPlugin = panelPlugin({
  id: '@af-gateway/lab-extension:rucio',
  description: 'AF Gateway: the Rucio data panel and its dataset actions.',
  optional: [INotebookTracker],
  activate: (ctx, notebooks) => activate(ctx, notebooks as INotebookTracker | null),
});
