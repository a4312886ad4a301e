// Wires the AF Gateway panels into JupyterLab: settings, the gateway client and its models, the
// sidebar panels, the status bar item, commands in the palette and the layout restorer (the
// workflows feature wires itself in panels/workflows/workflow-commands.ts).
import { ILayoutRestorer, type JupyterFrontEnd, type JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, MainAreaWidget, Notification, showDialog, showErrorMessage, WidgetTracker } from '@jupyterlab/apputils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { INotebookTracker, NotebookActions, type NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { IFrame, type LabIcon } from '@jupyterlab/ui-components';
import type { Widget } from '@lumino/widgets';
import type { RucioRegisterRequest } from '@af-gateway/schemas';
import { connectCode } from './api/connect-code';
import { GatewayClient } from './api/gateway-client';
import { effectiveAuthMode, type GatewaySettings, normaliseSettings, resolveGatewayUrl } from './api/gateway-settings';
import { clustersIcon, rucioIcon, tokenIcon } from './icons';
import { currentPage } from './page-info';
import { ClustersModel, initialOptionValues, type ScaleRequestModel, validateScale } from './panels/clusters/clusters-model';
import { ClustersPanel } from './panels/clusters/clusters-panel';
import { FormDialogBody } from './panels/clusters/dialog-body';
import { makeOptionsForm, type OptionValues, validateOptions } from './panels/clusters/options-form';
import { ScaleForm } from './panels/clusters/scale-form';
import { fileListCell, parseRegisterFiles, pfnList } from './panels/rucio/rucio-files';
import { type MakeAvailableValue, MakeAvailableForm, type RegisterValue, RegisterForm, validateMakeAvailable, validateRegister } from './panels/rucio/rucio-forms';
import { RucioModel } from './panels/rucio/rucio-model';
import { RucioPanel } from './panels/rucio/rucio-panel';
import { TokenModel } from './panels/tokens/token-model';
import { TokenPanel, TokenStatusItem } from './panels/tokens/token-panel';
import { setupWorkflows } from './panels/workflows/workflow-commands';

const PLUGIN_ID = '@af-gateway/lab-extension:plugin';
const CATEGORY = 'AF Gateway';

const CommandIds = {
  openClusters: 'af:open-clusters',
  openToken: 'af:open-token',
  createCluster: 'af:create-cluster',
  scaleCluster: 'af:scale-cluster',
  shutdownCluster: 'af:shutdown-cluster',
  openDashboard: 'af:open-dashboard',
  insertCode: 'af:insert-connect-code',
  refreshToken: 'af:refresh-token',
  login: 'af:login',
  openRucio: 'af:open-rucio',
  insertFileList: 'af:insert-file-list',
} as const;

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

async function loadSettings(registry: ISettingRegistry | null): Promise<{ settings: GatewaySettings; raw: ISettingRegistry.ISettings | null }> {
  if (!registry) return { settings: normaliseSettings(undefined), raw: null };
  try {
    const raw = await registry.load(PLUGIN_ID);
    return { settings: normaliseSettings(raw.composite as Partial<GatewaySettings>), raw };
  } catch (err) {
    console.warn('AF Gateway: settings could not be loaded, using defaults', err);
    return { settings: normaliseSettings(undefined), raw: null };
  }
}

async function activate(
  app: JupyterFrontEnd,
  registry: ISettingRegistry | null,
  translator: ITranslator | null,
  palette: ICommandPalette | null,
  restorer: ILayoutRestorer | null,
  statusBar: IStatusBar | null,
  notebooks: INotebookTracker | null,
  browsers: IFileBrowserFactory | null,
): Promise<void> {
  const trans = (translator ?? nullTranslator).load('af_gateway_lab');
  const { settings, raw } = await loadSettings(registry);
  const page = currentPage();
  const client = new GatewayClient({
    baseUrl: resolveGatewayUrl(settings.gatewayUrl, page),
    authMode: effectiveAuthMode(settings.authMode, page),
    username: settings.username,
  });
  const clusters = new ClustersModel(client);
  const token = new TokenModel(client, settings.tokenWarningMinutes * 60);
  clusters.tokenEvent.connect((_m, status) => token.update(status));
  const rucio = new RucioModel(client, { instance: settings.rucioInstance, scheme: settings.rucioScheme });

  raw?.changed.connect(() => {
    const next = normaliseSettings(raw.composite as Partial<GatewaySettings>);
    token.warnSeconds = next.tokenWarningMinutes * 60;
    settings.defaultClusterOptions = next.defaultClusterOptions;
    if (next.gatewayUrl !== settings.gatewayUrl || next.authMode !== settings.authMode || next.username !== settings.username) {
      Notification.info(trans.__('AF Gateway: reload the page to connect with the new gateway settings.'), { autoClose: 8000 });
    }
  });

  const { commands, shell } = app;

  // --- dashboards as main-area panes ----------------------------------------------------------
  const dashboards = new WidgetTracker<MainAreaWidget<IFrame>>({ namespace: 'af-dashboard' });
  const openDashboard = (cluster: string, label: string, path: string): MainAreaWidget<IFrame> => {
    const id = `af-dashboard-${cluster}-${path.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const existing = dashboards.find((w) => w.id === id);
    if (existing) {
      shell.activateById(existing.id);
      return existing;
    }
    // The gateway serves dashboards sandboxed anyway (an opaque origin); the frame asks for no more.
    const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-popups'] });
    frame.url = client.dashboardUrl(cluster, path);
    const widget = new MainAreaWidget({ content: frame });
    widget.id = id;
    widget.title.label = `${label} (${cluster.slice(0, 8)})`;
    widget.title.caption = `${label}: dashboard of cluster ${cluster}`;
    widget.title.icon = clustersIcon;
    widget.addClass('jp-AFDashboard');
    (widget as MainAreaWidget<IFrame> & { afArgs?: unknown }).afArgs = { cluster, label, path };
    void dashboards.add(widget);
    shell.add(widget, 'main', { mode: 'split-right' });
    return widget;
  };

  // --- actions ----------------------------------------------------------------------------------
  const login = () => window.location.assign(client.loginUrl(window.location.pathname + window.location.search));

  const createCluster = async () => {
    let fields;
    try {
      fields = (await client.options()).cluster_options;
    } catch (err) {
      return showErrorMessage(trans.__('Cannot load the cluster options'), errorText(err));
    }
    let values: OptionValues = initialOptionValues(fields, settings.defaultClusterOptions);
    for (;;) {
      const body = new FormDialogBody<OptionValues>(values, makeOptionsForm(fields), (v) => validateOptions(fields, v));
      const res = await showDialog({ title: trans.__('New Dask cluster'), body, buttons: [Dialog.cancelButton(), Dialog.okButton({ label: trans.__('Create') })] });
      if (!res.button.accept || !res.value) return;
      values = res.value;
      if (validateOptions(fields, values)) continue; // accepted with Enter while invalid: ask again
      try {
        await clusters.create(values);
        return;
      } catch (err) {
        await showErrorMessage(trans.__('The cluster was not created'), errorText(err));
        return;
      }
    }
  };

  const scaleCluster = async (name: string) => {
    const c = clusters.get(name);
    const adaptive = c?.adaptive ?? null;
    let value: ScaleRequestModel = {
      mode: adaptive ? 'adaptive' : 'manual',
      workers: c?.workers.requested ?? 0,
      minimum: adaptive?.minimum ?? 0,
      maximum: adaptive?.maximum ?? Math.max(1, c?.workers.requested ?? 1),
    };
    for (;;) {
      const body = new FormDialogBody<ScaleRequestModel>(value, ScaleForm, validateScale);
      const res = await showDialog({ title: trans.__('Scale %1', name), body, buttons: [Dialog.cancelButton(), Dialog.okButton({ label: trans.__('Scale') })] });
      if (!res.button.accept || !res.value) return;
      value = res.value;
      if (validateScale(value)) continue;
      try {
        const clamped = await clusters.scale(name, value);
        if (clamped) Notification.warning(clamped, { autoClose: 10000 });
        return;
      } catch (err) {
        await showErrorMessage(trans.__('Scaling failed'), errorText(err));
        return;
      }
    }
  };

  const shutdownCluster = async (name: string) => {
    const res = await showDialog({
      title: trans.__('Shut down %1?', name),
      body: trans.__('Its scheduler and all its workers stop, and the results they hold are lost.'),
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: trans.__('Shut down') })],
    });
    if (!res.button.accept) return;
    try {
      await clusters.stop(name);
    } catch (err) {
      await showErrorMessage(trans.__('Shutdown failed'), errorText(err));
    }
  };

  const insertCode = async (name: string) => {
    let code: string;
    try {
      code = connectCode(await client.connectInfo(), name, client.baseUrl.replace(/\/$/, ''));
    } catch (err) {
      return showErrorMessage(trans.__('Cannot build the connect code'), errorText(err));
    }
    await insertCell(code);
  };

  /** Puts `code` into a new cell of the active notebook (or of a new one), below the active cell. */
  const insertCell = async (code: string) => {
    // The active notebook; else the one last focused; else any open one (focus may be in a sidebar).
    let panel: NotebookPanel | null = notebooks?.currentWidget ?? notebooks?.find(() => true) ?? null;
    if (!panel) panel = (await commands.execute('notebook:create-new', { kernelName: 'python3' })) as NotebookPanel;
    await panel.context.ready;
    shell.activateById(panel.id);
    const nb = panel.content;
    const active = nb.activeCell;
    if (!active || active.model.sharedModel.getSource().trim() !== '') NotebookActions.insertBelow(nb);
    nb.activeCell?.model.sharedModel.setSource(code);
  };

  // --- Rucio actions on the open dataset --------------------------------------------------------
  const openDatasetPfns = () => {
    if (!rucio.dataset) return null;
    const { pfns, missing } = pfnList(rucio.rows);
    if (missing) Notification.warning(trans.__('%1 of %2 files have no %3 replica: they are left out.', String(missing), String(rucio.rows.length), rucio.scheme), { autoClose: 10000 });
    return pfns;
  };

  const copyPfns = async () => {
    const pfns = openDatasetPfns();
    if (!pfns) return;
    try {
      await navigator.clipboard.writeText(pfns.join('\n') + (pfns.length ? '\n' : ''));
      Notification.success(trans.__('Copied %1 %2 PFNs of %3', String(pfns.length), rucio.scheme, rucio.didLabel), { autoClose: 5000 });
    } catch (err) {
      await showErrorMessage(trans.__('The PFNs were not copied'), errorText(err));
    }
  };

  const insertFileList = async () => {
    const pfns = openDatasetPfns();
    if (!pfns) return showErrorMessage(trans.__('No dataset open'), trans.__('Open a dataset in the Rucio panel first.'));
    await insertCell(fileListCell(pfns, rucio.didLabel, rucio.scheme));
  };

  const makeAvailable = async () => {
    if (!rucio.dataset) return;
    let value: MakeAvailableValue = { rseExpression: '', lifetimeDays: 7 };
    for (;;) {
      const body = new FormDialogBody<MakeAvailableValue>(value, MakeAvailableForm, validateMakeAvailable);
      const res = await showDialog({ title: trans.__('Make %1 available', rucio.didLabel), body, buttons: [Dialog.cancelButton(), Dialog.okButton({ label: trans.__('Create rule') })] });
      if (!res.button.accept || !res.value) return;
      value = res.value;
      if (validateMakeAvailable(value)) continue;
      try {
        await rucio.makeAvailable(value.rseExpression.trim(), value.lifetimeDays);
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
      const res = await showDialog({ title: trans.__('Register outputs in Rucio (%1)', rucio.instance), body, buttons: [Dialog.cancelButton(), Dialog.okButton({ label: trans.__('Register') })] });
      if (!res.button.accept || !res.value) return;
      value = res.value;
      if (validateRegister(value)) continue;
      const files = parseRegisterFiles(value.files).files;
      try {
        const done = await client.rucioRegister(rucio.instance, {
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

  /** A left-sidebar panel of ours, restored with the layout. */
  const addSidebar = (widget: Widget, id: string, icon: LabIcon, caption: string, rank: number) => {
    widget.id = id;
    widget.title.icon = icon;
    widget.title.caption = caption;
    shell.add(widget, 'left', { rank });
    restorer?.add(widget, id);
  };

  // --- panels -----------------------------------------------------------------------------------
  const clustersPanel = new ClustersPanel(
    clusters,
    {
      create: () => void commands.execute(CommandIds.createCluster),
      scale: (name) => void commands.execute(CommandIds.scaleCluster, { name }),
      shutdown: (name) => void commands.execute(CommandIds.shutdownCluster, { name }),
      dashboards: (name) => client.dashboardPlots(name),
      openDashboard: (name, label, path) => void commands.execute(CommandIds.openDashboard, { cluster: name, label, path }),
      insertCode: (name) => void commands.execute(CommandIds.insertCode, { name }),
      login,
    },
    trans,
  );
  addSidebar(clustersPanel, 'af-clusters', clustersIcon, trans.__('Dask clusters (AF Gateway)'), 200);

  const tokenPanel = new TokenPanel(token, { refresh: () => void commands.execute(CommandIds.refreshToken), login }, trans);
  addSidebar(tokenPanel, 'af-token', tokenIcon, trans.__('Access token (AF Gateway)'), 201);

  const rucioPanel = new RucioPanel(
    rucio,
    {
      copyPfns: () => void copyPfns(),
      insertFileList: () => void commands.execute(CommandIds.insertFileList),
      makeAvailable: () => void makeAvailable(),
      registerOutputs: () => void registerOutputs(),
      login,
    },
    trans,
  );
  addSidebar(rucioPanel, 'af-rucio', rucioIcon, trans.__('Rucio data (AF Gateway)'), 202);

  const workflows = setupWorkflows({ app, client, events: clusters, trans, palette, restorer, browsers, addSidebar, login, category: CATEGORY });

  if (statusBar) {
    const item = new TokenStatusItem(token, () => shell.activateById(tokenPanel.id), trans);
    statusBar.registerStatusItem('@af-gateway/lab-extension:token-status', { item, align: 'left', rank: 4 });
  }

  // --- commands ---------------------------------------------------------------------------------
  const nameArg = (args: Record<string, unknown>) => String(args.name ?? '');
  commands.addCommand(CommandIds.openClusters, { label: trans.__('Show Dask Clusters'), icon: clustersIcon, execute: () => shell.activateById(clustersPanel.id) });
  commands.addCommand(CommandIds.openToken, { label: trans.__('Show Access Token'), icon: tokenIcon, execute: () => shell.activateById(tokenPanel.id) });
  commands.addCommand(CommandIds.createCluster, { label: trans.__('New Dask Cluster…'), execute: () => createCluster() });
  commands.addCommand(CommandIds.scaleCluster, { label: trans.__('Scale Dask Cluster…'), execute: (args) => scaleCluster(nameArg(args)) });
  commands.addCommand(CommandIds.shutdownCluster, { label: trans.__('Shut Down Dask Cluster…'), execute: (args) => shutdownCluster(nameArg(args)) });
  commands.addCommand(CommandIds.insertCode, { label: trans.__('Insert Dask Cluster Connect Code'), execute: (args) => insertCode(nameArg(args)) });
  commands.addCommand(CommandIds.openDashboard, {
    label: (args) => (args.label ? trans.__('Dask Dashboard: %1', String(args.label)) : trans.__('Dask Dashboard')),
    execute: (args) => openDashboard(String(args.cluster), String(args.label ?? 'Status'), String(args.path ?? 'status')),
  });
  commands.addCommand(CommandIds.refreshToken, {
    label: trans.__('Refresh Access Token Now'),
    execute: async () => {
      try {
        await token.refreshNow();
      } catch (err) {
        await showErrorMessage(trans.__('The token was not refreshed'), errorText(err));
      }
    },
  });
  commands.addCommand(CommandIds.login, { label: trans.__('Log In to AF Gateway'), execute: login });
  commands.addCommand(CommandIds.openRucio, { label: trans.__('Show Rucio Data'), icon: rucioIcon, execute: () => shell.activateById(rucioPanel.id) });
  commands.addCommand(CommandIds.insertFileList, {
    label: trans.__('Insert File List of the Open Rucio Dataset'),
    isEnabled: () => rucio.dataset !== null && rucio.phase === 'done',
    execute: () => insertFileList(),
  });
  if (palette) {
    for (const command of [CommandIds.openClusters, CommandIds.openToken, CommandIds.createCluster, CommandIds.refreshToken, CommandIds.login, CommandIds.openRucio, CommandIds.insertFileList]) {
      palette.addItem({ command, category: CATEGORY });
    }
  }

  // --- layout restorer --------------------------------------------------------------------------
  if (restorer) {
    void restorer.restore(dashboards, {
      command: CommandIds.openDashboard,
      args: (w) => ((w as MainAreaWidget<IFrame> & { afArgs?: Record<string, string> }).afArgs ?? {}) as Record<string, string>,
      name: (w) => w.id,
    });
  }

  // Clusters first (its list call opens the gateway session the event stream needs), then the token.
  void (async () => {
    await clusters.start();
    if (clusters.connection === 'login-required' && client.authMode === 'jupyterhub') {
      // Behind JupyterHub the user is logged in already: the Hub's OAuth round trip for the gateway
      // service needs no input, so it runs in a hidden frame; the Log in button stays as fallback.
      await silentLogin(client.loginUrl(new URL(client.url('api/health')).pathname));
      await clusters.start();
    }
    await Promise.all([token.start(), workflows.start()]);
    // The Rucio panel, when shown before the Hub login above finished, asks again now.
    if (rucio.state === 'login-required') await rucio.start();
  })();
}

/** Loads a login URL in a hidden frame and resolves when it settles (or after 15 s). */
function silentLogin(url: string): Promise<void> {
  return new Promise((resolve) => {
    const frame = document.createElement('iframe');
    frame.style.display = 'none';
    const done = () => {
      clearTimeout(timer);
      frame.remove();
      resolve();
    };
    const timer = setTimeout(done, 15_000);
    frame.onload = done;
    frame.src = url;
    document.body.appendChild(frame);
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'AF Gateway: Dask clusters, access token status and more, from the facility gateway.',
  autoStart: true,
  optional: [ISettingRegistry, ITranslator, ICommandPalette, ILayoutRestorer, IStatusBar, INotebookTracker, IFileBrowserFactory],
  activate,
};

export default plugin;
