import { LabIcon } from '@jupyterlab/ui-components';

/** One of our icons: 24x24, its shapes filled in the theme's icon colour (`extra` drawn after them, as it is). */
function afIcon(name: string, shapes: string, extra = ''): LabIcon {
  return new LabIcon({
    name: `af-gateway:${name}`,
    svgstr: `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">${shapes}</g>${extra}</svg>`,
  });
}

// Three connected nodes: a Dask cluster.
export const clustersIcon = afIcon(
  'clusters',
  '<circle cx="6" cy="6" r="3"/><circle cx="18" cy="6" r="3"/><circle cx="12" cy="18" r="3"/><path d="M7.2 7.9l3.6 7.3 1.3-.6-3.6-7.3zM16.8 7.9l-3.6 7.3-1.3-.6 3.6-7.3zM8.5 5.3h7v1.4h-7z"/>',
);

// A key: the access token.
export const tokenIcon = afIcon('token', '<path d="M7.5 7a5 5 0 1 0 4.58 7H14v2h2v-2h2v2h2v-4h-7.92A5 5 0 0 0 7.5 7zm0 3a2 2 0 1 1 0 4 2 2 0 0 1 0-4z"/>');

// A stack of disks: Rucio's data.
export const rucioIcon = afIcon(
  'rucio',
  '<ellipse cx="12" cy="5.5" rx="7.5" ry="2.5"/><path d="M4.5 8v3.5c0 1.4 3.4 2.5 7.5 2.5s7.5-1.1 7.5-2.5V8c0 1.4-3.4 2.5-7.5 2.5S4.5 9.4 4.5 8zM4.5 14v4c0 1.4 3.4 2.5 7.5 2.5s7.5-1.1 7.5-2.5v-4c0 1.4-3.4 2.5-7.5 2.5S4.5 15.4 4.5 14z"/>',
);

// Four boxes joined left to right: a workflow's stages.
export const workflowsIcon = afIcon(
  'workflows',
  '<rect x="1.5" y="9" width="5" height="6" rx="1"/><rect x="9.5" y="3" width="5" height="6" rx="1"/><rect x="9.5" y="15" width="5" height="6" rx="1"/><rect x="17.5" y="9" width="5" height="6" rx="1"/>',
  '<path class="jp-icon3" fill="none" stroke="#616161" stroke-width="1.5" d="M6.5 12H8V6h1.5M8 12v6h1.5M14.5 6H16v6h1.5M14.5 18H16v-6"/>',
);
