// The Clusters panel as a plugin: the sidebar panel, the dialogs that create, scale and shut down a
// cluster, dashboards as main-area panes (restored with the layout) and the connect code in a notebook.
import { ILayoutRestorer, type JupyterFrontEnd, type JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, MainAreaWidget, Notification, showDialog, showErrorMessage, WidgetTracker } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { IFrame } from '@jupyterlab/ui-components';
import { connectCode } from '../../api/connect-code';
import { FormDialogBody } from '../../components/dialog-body';
import { errorText } from '../../components/format';
import { insertCodeCell } from '../../components/notebook-cell';
import { addSidebarPanel } from '../../components/sidebar';
import { clustersIcon } from '../../icons';
import { CATEGORY } from '../../session/plugin';
import { IAfGatewaySession } from '../../session/tokens';
import { ClustersModel, initialOptionValues, type ScaleRequestModel, validateScale } from './clusters-model';
import { ClustersPanel } from './clusters-panel';
import { makeOptionsForm, type OptionValues, validateOptions } from './options-form';
import { ScaleForm } from './scale-form';

export const ClusterCommandIds = {
  openClusters: 'af:open-clusters',
  createCluster: 'af:create-cluster',
  scaleCluster: 'af:scale-cluster',
  shutdownCluster: 'af:shutdown-cluster',
  openDashboard: 'af:open-dashboard',
  insertCode: 'af:insert-connect-code',
} as const;

type DashboardWidget = MainAreaWidget<IFrame> & { afArgs?: Record<string, string> };

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
  const { client } = session;
  const model = new ClustersModel(session);

  // --- dashboards as main-area panes ----------------------------------------------------------
  const dashboards = new WidgetTracker<DashboardWidget>({ namespace: 'af-dashboard' });
  const openDashboard = (cluster: string, label: string, path: string): DashboardWidget => {
    const id = `af-dashboard-${cluster}-${path.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const existing = dashboards.find((w) => w.id === id);
    if (existing) {
      shell.activateById(existing.id);
      return existing;
    }
    // The gateway serves dashboards sandboxed anyway (an opaque origin); the frame asks for no more.
    const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-popups'] });
    frame.url = client.dashboardUrl(cluster, path);
    const widget: DashboardWidget = new MainAreaWidget({ content: frame });
    widget.id = id;
    widget.title.label = `${label} (${cluster.slice(0, 8)})`;
    widget.title.caption = `${label}: dashboard of cluster ${cluster}`;
    widget.title.icon = clustersIcon;
    widget.addClass('jp-AFDashboard');
    widget.afArgs = { cluster, label, path };
    void dashboards.add(widget);
    shell.add(widget, 'main', { mode: 'split-right' });
    return widget;
  };

  // --- actions ----------------------------------------------------------------------------------
  const createCluster = async () => {
    let fields;
    try {
      fields = (await client.options()).cluster_options;
    } catch (err) {
      return showErrorMessage(trans.__('Cannot load the cluster options'), errorText(err));
    }
    let values: OptionValues = initialOptionValues(fields, session.settings.defaultClusterOptions);
    for (;;) {
      const body = new FormDialogBody<OptionValues>(values, makeOptionsForm(fields), (v) => validateOptions(fields, v));
      const res = await showDialog({ title: trans.__('New Dask cluster'), body, buttons: [Dialog.cancelButton(), Dialog.okButton({ label: trans.__('Create') })] });
      if (!res.button.accept || !res.value) return;
      values = res.value;
      if (validateOptions(fields, values)) continue; // accepted with Enter while invalid: ask again
      try {
        await model.create(values);
        return;
      } catch (err) {
        await showErrorMessage(trans.__('The cluster was not created'), errorText(err));
        return;
      }
    }
  };

  const scaleCluster = async (name: string) => {
    const c = model.get(name);
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
        const clamped = await model.scale(name, value);
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
      await model.stop(name);
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
    await insertCodeCell(app, notebooks, code);
  };

  // --- panel ------------------------------------------------------------------------------------
  const panel = new ClustersPanel(
    model,
    {
      create: () => void commands.execute(ClusterCommandIds.createCluster),
      scale: (name) => void commands.execute(ClusterCommandIds.scaleCluster, { name }),
      shutdown: (name) => void commands.execute(ClusterCommandIds.shutdownCluster, { name }),
      dashboards: (name) => client.dashboardPlots(name),
      openDashboard: (name, label, path) => void commands.execute(ClusterCommandIds.openDashboard, { cluster: name, label, path }),
      insertCode: (name) => void commands.execute(ClusterCommandIds.insertCode, { name }),
      login: () => session.logIn(),
    },
    trans,
  );
  addSidebarPanel(app, restorer, panel, { id: 'af-clusters', icon: clustersIcon, caption: trans.__('Dask clusters (AF Gateway)'), rank: 200 });

  // --- commands ---------------------------------------------------------------------------------
  const nameArg = (args: Record<string, unknown>) => String(args.name ?? '');
  commands.addCommand(ClusterCommandIds.openClusters, { label: trans.__('Show Dask Clusters'), icon: clustersIcon, execute: () => shell.activateById(panel.id) });
  commands.addCommand(ClusterCommandIds.createCluster, { label: trans.__('New Dask Cluster…'), execute: () => createCluster() });
  commands.addCommand(ClusterCommandIds.scaleCluster, { label: trans.__('Scale Dask Cluster…'), execute: (args) => scaleCluster(nameArg(args)) });
  commands.addCommand(ClusterCommandIds.shutdownCluster, { label: trans.__('Shut Down Dask Cluster…'), execute: (args) => shutdownCluster(nameArg(args)) });
  commands.addCommand(ClusterCommandIds.insertCode, { label: trans.__('Insert Dask Cluster Connect Code'), execute: (args) => insertCode(nameArg(args)) });
  commands.addCommand(ClusterCommandIds.openDashboard, {
    label: (args) => (args.label ? trans.__('Dask Dashboard: %1', String(args.label)) : trans.__('Dask Dashboard')),
    execute: (args) => openDashboard(String(args.cluster), String(args.label ?? 'Status'), String(args.path ?? 'status')),
  });
  for (const command of [ClusterCommandIds.openClusters, ClusterCommandIds.createCluster]) palette?.addItem({ command, category: CATEGORY });
  if (restorer) {
    void restorer.restore(dashboards, { command: ClusterCommandIds.openDashboard, args: (w) => w.afArgs ?? {}, name: (w) => w.id });
  }

  void session.ready.then(() => model.start());
}

export const clustersPlugin: JupyterFrontEndPlugin<void> = {
  id: '@af-gateway/lab-extension:clusters',
  description: 'AF Gateway: the Dask clusters panel, its dialogs, dashboards and connect code.',
  autoStart: true,
  requires: [IAfGatewaySession],
  optional: [ITranslator, ICommandPalette, ILayoutRestorer, INotebookTracker],
  activate,
};
