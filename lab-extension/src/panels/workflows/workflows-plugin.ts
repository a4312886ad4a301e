// The workflows feature as a plugin: the Workflows sidebar panel, a main-area DAG view per
// run (restored with the layout), "Run as workflow" in the file browser's context menu, and the
// commands af:open-workflows, af:run-workflow, af:open-workflow-run, af:cancel-workflow,
// af:retry-workflow, af:delete-workflow.
import { Dialog, MainAreaWidget, ReactWidget, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { FileDialog, IDefaultFileBrowser, IFileBrowserFactory } from '@jupyterlab/filebrowser';
import type { TranslationBundle } from '@jupyterlab/translation';
import React from 'react';
import type { WorkflowRun } from '@af-gateway/schemas';
import { GatewayError } from '../../api/gateway-client';
import { askForm } from '../../components/dialog-body';
import { errorText } from '../../components/format';
import { type PanelContext, panelPlugin } from '../../components/panel-plugin';
import { workflowsIcon } from '../../icons';
import { DagModel } from './dag-model';
import { DagWidget } from './dag-view';
import { loadElk } from './elk-client';
import { makeRunForm, ProblemList, type SpecProblem } from './run-form';
import { collectBundle, defaultRunName, isWorkflowFile, type RunFormValue, runRequest, validateRunForm } from './workflow-bundle';
import { WorkflowsModel } from './workflows-model';
import { WorkflowsPanel } from './workflows-panel';

export const WorkflowCommandIds = {
  openWorkflows: 'af:open-workflows',
  runWorkflow: 'af:run-workflow',
  openRun: 'af:open-workflow-run',
  cancelRun: 'af:cancel-workflow',
  retryRun: 'af:retry-workflow',
  deleteRun: 'af:delete-workflow',
} as const;

class ProblemsBody extends ReactWidget {
  constructor(
    private readonly problems: SpecProblem[],
    private readonly trans: TranslationBundle,
  ) {
    super();
    this.addClass('jp-AFWorkflowRun');
  }

  render(): JSX.Element {
    return React.createElement(ProblemList, { problems: this.problems, trans: this.trans });
  }
}

function activate(
  { app, session, trans, mainAreaWidgets, addSidebar, addToPalette }: PanelContext,
  browsers: IFileBrowserFactory | null,
  defaultBrowser: IDefaultFileBrowser | null,
): WorkflowsModel {
  const { commands, shell } = app;
  const { client } = session;
  const model = new WorkflowsModel(session);

  // --- DAG views in the main area ---------------------------------------------------------------
  const views = mainAreaWidgets<MainAreaWidget<DagWidget>>('af-workflow-run', WorkflowCommandIds.openRun);
  const download = async (id: string, rel: string) => {
    try {
      const blob = await client.workflowFile(id, rel);
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = rel.split('/').pop() || 'output';
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (err) {
      await showErrorMessage(trans.__('The file was not downloaded'), errorText(err));
    }
  };
  const openRun = (id: string): MainAreaWidget<DagWidget> => {
    const widgetId = `af-workflow-${id}`;
    const existing = views.find(widgetId);
    if (existing) {
      shell.activateById(existing.id);
      return existing;
    }
    const dag = new DagModel(id, model);
    const content = new DagWidget(
      dag,
      client,
      {
        cancel: (run) => void commands.execute(WorkflowCommandIds.cancelRun, { id: run }),
        retry: (run) => void commands.execute(WorkflowCommandIds.retryRun, { id: run }),
        download: (run, rel) => void download(run, rel),
      },
      trans,
    );
    const widget = new MainAreaWidget({ content });
    widget.id = widgetId;
    const name = model.get(id)?.name ?? id.slice(0, 8);
    widget.title.label = trans.__('Workflow %1', name);
    widget.title.caption = trans.__('Workflow run %1 (%2)', name, id);
    widget.title.icon = workflowsIcon;
    widget.title.closable = true;
    widget.addClass('jp-AFDagWidget');
    dag.changed.connect(() => {
      const run = dag.state?.run;
      if (run && widget.title.label !== trans.__('Workflow %1', run.name)) {
        widget.title.label = trans.__('Workflow %1', run.name);
        widget.title.caption = trans.__('Workflow run %1 (%2)', run.name, id);
      }
    });
    views.add(widget, { id });
    shell.add(widget, 'main');
    shell.activateById(widget.id);
    void dag.load();
    return widget;
  };

  // --- actions ----------------------------------------------------------------------------------
  const readText = async (path: string): Promise<string> => {
    let file;
    try {
      file = await app.serviceManager.contents.get(path, { content: true, type: 'file', format: 'text' });
    } catch (err) {
      // The contents service answers a missing file with "Invalid response: 404 Not Found" (a ServerConnection.ResponseError).
      const status = (err as { response?: { status?: unknown } } | null)?.response?.status;
      if (status === 404) {
        throw new Error(trans.__('There is no file %1 in the file browser’s folders: it may have been moved, renamed or deleted.', path), { cause: err });
      }
      if (status === 400) {
        throw new Error(trans.__('%1 is not a text file: a workflow is a YAML or JSON file.', path), { cause: err });
      }
      throw err;
    }
    if (typeof file.content !== 'string') throw new Error(trans.__('%1 is not a text file: a workflow is a YAML or JSON file.', path));
    return file.content;
  };

  const showProblems = (title: string, problems: SpecProblem[]) => showDialog({ title, body: new ProblemsBody(problems, trans), buttons: [Dialog.okButton()] });

  /** The file selected in the file browser, when it looks like a workflow. */
  const selectedWorkflowFile = (): string | null => {
    const browser = browsers?.tracker.currentWidget;
    if (!browser) return null;
    const first = browser.selectedItems().next();
    if (first.done || !first.value) return null;
    return first.value.type !== 'directory' && isWorkflowFile(first.value.name) ? first.value.path : null;
  };

  /** Asks for the workflow file with Lab's file dialog (YAML and JSON files and folders shown), from the file browser's folder. */
  const askPath = async (): Promise<string | null> => {
    const browser = browsers?.tracker.currentWidget ?? defaultBrowser;
    if (!browser) {
      await showErrorMessage(trans.__('Run workflow'), trans.__('Right-click a workflow file in the file browser and choose “Run as Workflow”.'));
      return null;
    }
    for (;;) {
      const res = await FileDialog.getOpenFiles({
        manager: browser.model.manager,
        title: trans.__('Run workflow: choose its file'),
        label: trans.__('The workflow file (.yml, .yaml or .json): the steps files it names go along.'),
        defaultPath: browser.model.path,
        filter: (item) => (item.type === 'directory' || isWorkflowFile(item.name) ? {} : null),
      });
      if (!res.button.accept) return null;
      const file = (res.value ?? []).find((item) => item.type !== 'directory');
      if (file) return file.path;
      await showErrorMessage(trans.__('Run workflow'), trans.__('Choose a workflow file (.yml, .yaml or .json), not a folder.'));
    }
  };

  const runWorkflow = async (path: string): Promise<WorkflowRun | null> => {
    let bundle;
    try {
      bundle = await collectBundle(path, readText);
    } catch (err) {
      await showErrorMessage(trans.__('Cannot read %1', path), errorText(err));
      return null;
    }
    for (const u of bundle.unreadable) console.warn(`AF Gateway: ${u.file} (named in a $ref) could not be read: ${u.error}`);
    let validation;
    try {
      validation = await model.validate({ entry: bundle.entry, files: bundle.files });
    } catch (err) {
      await showErrorMessage(trans.__('The workflow could not be checked'), errorText(err));
      return null;
    }
    if (!validation.valid) {
      await showProblems(trans.__('%1 is not a valid workflow', path), validation.errors);
      return null;
    }
    void loadElk(); // the DAG view needs it next: load it while the user fills in the form
    const defaultName = defaultRunName(bundle.dir, bundle.entry);
    let value: RunFormValue = {
      parameters: Object.fromEntries((validation.parameters ?? []).map((p) => [p, ''])),
      name: defaultName,
      backend: '',
      retries: '',
    };
    const Form = makeRunForm({ entry: path, stages: validation.stages ?? [], backends: model.backends, defaultName, trans });
    for (;;) {
      const given = await askForm({ title: trans.__('Run %1', path), value, Form, validate: validateRunForm, accept: trans.__('Run') });
      if (!given) return null;
      value = given;
      try {
        const run = await model.submit(runRequest(bundle, value, defaultName));
        openRun(run.id);
        return run;
      } catch (err) {
        if (err instanceof GatewayError && err.details.length) {
          await showProblems(err.message, err.details);
          return null;
        }
        await showErrorMessage(trans.__('The workflow was not started'), errorText(err));
        // A missing parameter or a refused backend: the form comes back with the values given.
        if (err instanceof GatewayError && err.status === 422) continue;
        return null;
      }
    }
  };

  const confirm = async (title: string, body: string, label: string) => {
    const res = await showDialog({ title, body, buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })] });
    return res.button.accept;
  };
  const runLabel = (id: string) => model.get(id)?.name ?? id;

  const act = async (what: () => Promise<void>, failure: string) => {
    try {
      await what();
    } catch (err) {
      await showErrorMessage(failure, errorText(err));
    }
  };

  // --- panel ------------------------------------------------------------------------------------
  const panel = new WorkflowsPanel(
    model,
    {
      run: () => void commands.execute(WorkflowCommandIds.runWorkflow, { ask: true }),
      open: (id) => void commands.execute(WorkflowCommandIds.openRun, { id }),
      cancel: (id) => void commands.execute(WorkflowCommandIds.cancelRun, { id }),
      retry: (id) => void commands.execute(WorkflowCommandIds.retryRun, { id }),
      remove: (id) => void commands.execute(WorkflowCommandIds.deleteRun, { id }),
      login: () => session.logIn(),
    },
    trans,
  );
  const open = { command: WorkflowCommandIds.openWorkflows, label: trans.__('Show Workflows') };
  addSidebar(panel, { id: 'af-workflows', icon: workflowsIcon, caption: trans.__('Workflows (AF Gateway)'), rank: 203 }, open);

  // --- commands ---------------------------------------------------------------------------------
  const idArg = (args: Record<string, unknown>) => String(args.id ?? '');
  commands.addCommand(WorkflowCommandIds.runWorkflow, {
    label: (args) => (args.path || !args.ask ? trans.__('Run as Workflow') : trans.__('Run Workflow…')),
    caption: trans.__('Check this workflow file at the AF Gateway, ask for its parameters and run it'),
    icon: workflowsIcon,
    // In the file browser's menu: only for a selected .yml, .yaml or .json file.
    isVisible: (args) => Boolean(args.path || args.ask) || !browsers || selectedWorkflowFile() !== null,
    execute: async (args) => {
      const path = args.path ? String(args.path) : args.ask ? await askPath() : (selectedWorkflowFile() ?? (await askPath()));
      if (path) await runWorkflow(path);
    },
  });
  commands.addCommand(WorkflowCommandIds.openRun, {
    label: (args) => (args.id ? trans.__('Workflow Run %1', runLabel(idArg(args))) : trans.__('Open Workflow Run')),
    execute: (args) => openRun(idArg(args)),
  });
  commands.addCommand(WorkflowCommandIds.cancelRun, {
    label: trans.__('Cancel Workflow Run…'),
    execute: async (args) => {
      const id = idArg(args);
      if (
        !(await confirm(
          trans.__('Cancel %1?', runLabel(id)),
          trans.__('Its running steps are stopped and no further steps start. A cancelled run can be retried.'),
          trans.__('Cancel run'),
        ))
      )
        return;
      await act(() => model.cancel(id), trans.__('The run was not cancelled'));
    },
  });
  commands.addCommand(WorkflowCommandIds.retryRun, {
    label: trans.__('Retry Workflow Run'),
    execute: (args) => act(() => model.retry(idArg(args)), trans.__('The run was not retried')),
  });
  commands.addCommand(WorkflowCommandIds.deleteRun, {
    label: trans.__('Delete Workflow Run…'),
    execute: async (args) => {
      const id = idArg(args);
      if (
        !(await confirm(
          trans.__('Delete %1?', runLabel(id)),
          trans.__('The run and its workspace at the gateway (all the files its steps wrote) are removed.'),
          trans.__('Delete'),
        ))
      )
        return;
      await act(async () => {
        await model.remove(id);
        views.find(`af-workflow-${id}`)?.dispose();
      }, trans.__('The run was not deleted'));
    },
  });

  if (browsers) {
    app.contextMenu.addItem({ command: WorkflowCommandIds.runWorkflow, selector: '.jp-DirListing-item[data-file-type]', rank: 3 });
  }
  addToPalette({ command: WorkflowCommandIds.runWorkflow, args: { ask: true } });
  return model;
}

export const workflowsPlugin = panelPlugin({
  id: '@af-gateway/lab-extension:workflows',
  description: 'AF Gateway: the workflows panel, run views and "Run as Workflow".',
  optional: [IFileBrowserFactory, IDefaultFileBrowser],
  activate: (ctx, browsers, defaultBrowser) => activate(ctx, browsers as IFileBrowserFactory | null, defaultBrowser as IDefaultFileBrowser | null),
});
