import type { JupyterFrontEndPlugin } from '@jupyterlab/application';

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@af-gateway/lab-extension:plugin',
  autoStart: true,
  activate: () => {
    console.log('AF Gateway extension active');
  },
};
export default plugin;
