// The Clusters panel as a plugin: the sidebar panel, the dialogs that create, scale and shut down a
// cluster, dashboards as main-area panes (restored with the layout) and the connect code in a notebook.
import { Dialog, MainAreaWidget, Notification, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IFrame } from '@jupyterlab/ui-components';
import { connectCode } from '../../api/connect-code';
import { askForm } from '../../components/dialog-body';
import { errorText } from '../../components/format';
import { insertCodeCell } from '../../components/notebook-cell';
import { type PanelContext, panelPlugin } from '../../components/panel-plugin';
import { clustersIcon } from '../../icons';
import { clusterLabel, ClustersModel, initialOptionValues, type ScaleRequestModel, validateScale } from './clusters-model';
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

type DashboardWidget = MainAreaWidget<IFrame>;

function activate({ app, session, trans, mainAreaWidgets, addSidebar, addToPalette }: PanelContext, notebooks: INotebookTracker | null): ClustersModel {
  const { commands, shell } = app;
  const { client } = session;
  const model = new ClustersModel(session);

  /** A cluster in a dialog's title: its display name, else its id. */
  const named = (name: string) => model.get(name)?.display_name || name;

  // --- dashboards as main-area panes ----------------------------------------------------------
  const dashboards = mainAreaWidgets<DashboardWidget>('af-dashboard', ClusterCommandIds.openDashboard);
  const shown = new WeakMap<DashboardWidget, { cluster: string; label: string }>();
  // A tab says which cluster by its display name (else the start of its id); restored tabs open before
  // the cluster list arrives, so titles follow the list. Lumino renders titles as text.
  const entitle = (widget: DashboardWidget) => {
    const at = shown.get(widget);
    if (!at) return;
    const c = model.get(at.cluster);
    widget.title.label = `${at.label} (${clusterLabel(c, at.cluster)})`;
    widget.title.caption = c?.display_name
      ? `${at.label}: dashboard of cluster ${c.display_name} (${at.cluster})`
      : `${at.label}: dashboard of cluster ${at.cluster}`;
  };
  model.changed.connect(() => dashboards.tracker.forEach(entitle));
  const openDashboard = (cluster: string, label: string, path: string): DashboardWidget => {
    const id = `af-dashboard-${cluster}-${path.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const existing = dashboards.find(id);
    if (existing) {
      shell.activateById(existing.id);
      return existing;
    }
    // The gateway serves dashboards sandboxed anyway (an opaque origin); the frame asks for no more.
    const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-popups'] });
    frame.url = client.dashboardUrl(cluster, path);
    const widget: DashboardWidget = new MainAreaWidget({ content: frame });
    widget.id = id;
    shown.set(widget, { cluster, label });
    entitle(widget);
    widget.title.icon = clustersIcon;
    widget.addClass('jp-AFDashboard');
    dashboards.add(widget, { cluster, label, path });
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
    const values = await askForm<OptionValues>({
      title: trans.__('New Dask cluster'),
      value: initialOptionValues(fields, session.settings.defaultClusterOptions),
      Form: makeOptionsForm(fields),
      validate: (v) => validateOptions(fields, v),
      accept: trans.__('Create'),
    });
    if (!values) return;
    try {
      await model.create(values);
    } catch (err) {
      await showErrorMessage(trans.__('The cluster was not created'), errorText(err));
    }
  };

  const scaleCluster = async (name: string) => {
    const c = model.get(name);
    const adaptive = c?.adaptive ?? null;
    const initial: ScaleRequestModel = {
      mode: adaptive ? 'adaptive' : 'manual',
      workers: c?.workers.requested ?? 0,
      minimum: adaptive?.minimum ?? 0,
      maximum: adaptive?.maximum ?? Math.max(1, c?.workers.requested ?? 1),
    };
    const value = await askForm({
      title: trans.__('Scale %1', named(name)),
      value: initial,
      Form: ScaleForm,
      validate: validateScale,
      accept: trans.__('Scale'),
    });
    if (!value) return;
    try {
      const clamped = await model.scale(name, value);
      if (clamped) Notification.warning(clamped, { autoClose: 10000 });
    } catch (err) {
      await showErrorMessage(trans.__('Scaling failed'), errorText(err));
    }
  };

  const shutdownCluster = async (name: string) => {
    const title = named(name);
    const res = await showDialog({
      title: trans.__('Shut down %1?', title),
      body:
        title === name
          ? trans.__('Its scheduler and all its workers stop, and the results they hold are lost.')
          : trans.__('Cluster %1: its scheduler and all its workers stop, and the results they hold are lost.', name),
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
  const open = { command: ClusterCommandIds.openClusters, label: trans.__('Show Dask Clusters') };
  addSidebar(panel, { id: 'af-clusters', icon: clustersIcon, caption: trans.__('Dask clusters (AF Gateway)'), rank: 200 }, open);

  // --- commands ---------------------------------------------------------------------------------
  const nameArg = (args: Record<string, unknown>) => String(args.name ?? '');
  commands.addCommand(ClusterCommandIds.createCluster, { label: trans.__('New Dask Cluster…'), execute: () => createCluster() });
  commands.addCommand(ClusterCommandIds.scaleCluster, { label: trans.__('Scale Dask Cluster…'), execute: (args) => scaleCluster(nameArg(args)) });
  commands.addCommand(ClusterCommandIds.shutdownCluster, { label: trans.__('Shut Down Dask Cluster…'), execute: (args) => shutdownCluster(nameArg(args)) });
  commands.addCommand(ClusterCommandIds.insertCode, { label: trans.__('Insert Dask Cluster Connect Code'), execute: (args) => insertCode(nameArg(args)) });
  commands.addCommand(ClusterCommandIds.openDashboard, {
    label: (args) => (args.label ? trans.__('Dask Dashboard: %1', String(args.label)) : trans.__('Dask Dashboard')),
    execute: (args) => openDashboard(String(args.cluster), String(args.label ?? 'Status'), String(args.path ?? 'status')),
  });
  addToPalette(ClusterCommandIds.createCluster);
  return model;
}

export const clustersPlugin = panelPlugin({
  id: '@af-gateway/lab-extension:clusters',
  description: 'AF Gateway: the Dask clusters panel, its dialogs, dashboards and connect code.',
  optional: [INotebookTracker],
  activate: (ctx, notebooks) => activate(ctx, notebooks as INotebookTracker | null),
});
