// The Rucio panel as a plugin: the sidebar panel, and the actions on the open dataset (copy its
// PFNs, put its file list into a notebook, make it available on an RSE) and registering outputs.
import { ILayoutRestorer, type JupyterFrontEnd, type JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, Notification, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import type { RucioRegisterRequest } from '@af-gateway/schemas';
import { FormDialogBody } from '../../components/dialog-body';
import { errorText } from '../../components/format';
import { insertCodeCell } from '../../components/notebook-cell';
import { addSidebarPanel } from '../../components/sidebar';
import { rucioIcon } from '../../icons';
import { CATEGORY } from '../../session/plugin';
import { IAfGatewaySession } from '../../session/tokens';
import { fileListCell, parseRegisterFiles, pfnList } from './rucio-files';
import { type MakeAvailableValue, MakeAvailableForm, type RegisterValue, RegisterForm, validateMakeAvailable, validateRegister } from './rucio-forms';
import { RucioModel } from './rucio-model';
import { RucioPanel } from './rucio-panel';

export const RucioCommandIds = {
  openRucio: 'af:open-rucio',
  insertFileList: 'af:insert-file-list',
} as const;

function activate(
  app: JupyterFrontEnd,
  session: IAfGatewaySession,
  translator: ITranslator | null,
  palette: ICommandPalette | null,
  restorer: ILayoutRestorer | null,
  notebooks: INotebookTracker | null,
): void {
  const trans = (translator ?? nullTranslator).load('af_gateway_lab');
  const { commands, shell } = app;
  const { client, settings } = session;
  const model = new RucioModel(session, { instance: settings.rucioInstance, scheme: settings.rucioScheme });

  /** The open dataset's PFNs for the chosen scheme (files without such a replica are left out). */
  const openDatasetPfns = () => {
    if (!model.dataset) return null;
    const { pfns, missing } = pfnList(model.rows);
    if (missing) Notification.warning(trans.__('%1 of %2 files have no %3 replica: they are left out.', String(missing), String(model.rows.length), model.scheme), { autoClose: 10000 });
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
    let value: MakeAvailableValue = { rseExpression: '', lifetimeDays: 7 };
    for (;;) {
      const body = new FormDialogBody<MakeAvailableValue>(value, MakeAvailableForm, validateMakeAvailable);
      const res = await showDialog({ title: trans.__('Make %1 available', model.didLabel), body, buttons: [Dialog.cancelButton(), Dialog.okButton({ label: trans.__('Create rule') })] });
      if (!res.button.accept || !res.value) return;
      value = res.value;
      if (validateMakeAvailable(value)) continue;
      try {
        await model.makeAvailable(value.rseExpression.trim(), value.lifetimeDays);
      } catch (err) {
        await showErrorMessage(trans.__('No rule was created'), errorText(err));
      }
      return;
    }
  };

  const registerOutputs = async () => {
    let value: RegisterValue = { rse: '', scope: '', name: '', files: '' };
    for (;;) {
      const body = new FormDialogBody<RegisterValue>(value, RegisterForm, validateRegister);
      const res = await showDialog({ title: trans.__('Register outputs in Rucio (%1)', model.instance), body, buttons: [Dialog.cancelButton(), Dialog.okButton({ label: trans.__('Register') })] });
      if (!res.button.accept || !res.value) return;
      value = res.value;
      if (validateRegister(value)) continue;
      const files = parseRegisterFiles(value.files).files;
      try {
        const done = await client.rucioRegister(model.instance, {
          rse: value.rse.trim(),
          dataset: { scope: value.scope.trim(), name: value.name.trim() },
          files: files as RucioRegisterRequest['files'],
        });
        await showDialog({
          title: trans.__('Outputs registered'),
          body: trans.__('%1 files registered on %2 in %3:%4 (%5).', String(done.files), done.rse, done.dataset.scope, done.dataset.name, done.created ? trans.__('a new dataset') : trans.__('an existing dataset')),
          buttons: [Dialog.okButton()],
        });
      } catch (err) {
        await showErrorMessage(trans.__('The outputs were not registered'), errorText(err));
      }
      return;
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
  addSidebarPanel(app, restorer, panel, { id: 'af-rucio', icon: rucioIcon, caption: trans.__('Rucio data (AF Gateway)'), rank: 202 });

  commands.addCommand(RucioCommandIds.openRucio, { label: trans.__('Show Rucio Data'), icon: rucioIcon, execute: () => shell.activateById(panel.id) });
  commands.addCommand(RucioCommandIds.insertFileList, {
    label: trans.__('Insert File List of the Open Rucio Dataset'),
    isEnabled: () => model.dataset !== null && model.phase === 'done',
    execute: () => insertFileList(),
  });
  for (const command of [RucioCommandIds.openRucio, RucioCommandIds.insertFileList]) palette?.addItem({ command, category: CATEGORY });
  // The panel loads when it is first shown; the model asks again after a (Hub) login.
}

export const rucioPlugin: JupyterFrontEndPlugin<void> = {
  id: '@af-gateway/lab-extension:rucio',
  description: 'AF Gateway: the Rucio data panel and its dataset actions.',
  autoStart: true,
  requires: [IAfGatewaySession],
  optional: [ITranslator, ICommandPalette, ILayoutRestorer, INotebookTracker],
  activate,
};
