import { PageConfig } from '@jupyterlab/coreutils';
import type { PageInfo } from './api/gateway-settings';

/** Where this Lab runs, from JupyterLab's page configuration. */
export function currentPage(): PageInfo {
  return {
    origin: window.location.origin,
    baseUrl: new URL(PageConfig.getBaseUrl()).pathname,
    hubPrefix: PageConfig.getOption('hubPrefix'),
  };
}
