// The code "Insert connect code" puts into a notebook: the dask_gateway client configured for this
// gateway's address, scheduler proxy and authentication, never a bare scheduler address.
import type { ConnectInfo } from '@af-gateway/schemas';

const py = (s: string) => JSON.stringify(s); // a JSON string is a valid Python string literal

/**
 * `publicAddress` is the gateway as the browser reaches it (e.g. through the Hub's proxy): the
 * client prints dashboard links under it, so they open in the user's browser with their login.
 */
export function connectCode(info: ConnectInfo, clusterName: string, publicAddress?: string): string {
  const imports = ['from dask_gateway import Gateway'];
  let auth: string;
  switch (info.auth) {
    case 'basic':
      imports.push('from dask_gateway.auth import BasicAuth');
      auth = `BasicAuth(username=${py(info.username)})`;
      break;
    case 'jupyterhub':
      auth = py('jupyterhub'); // the kernel's JUPYTERHUB_API_TOKEN
      break;
    case 'bearer':
      imports.push('from af_gateway_client import BearerTokenAuth  # WLCG bearer token discovery');
      auth = 'BearerTokenAuth()';
      break;
  }
  return [
    ...imports,
    '',
    'gateway = Gateway(',
    `    address=${py(info.address)},`,
    `    proxy_address=${py(info.proxy_address)},`,
    ...(publicAddress && publicAddress !== info.address ? [`    public_address=${py(publicAddress)},`] : []),
    `    auth=${auth},`,
    ')',
    `cluster = gateway.connect(${py(clusterName)})`,
    'client = cluster.get_client()',
    'client',
  ].join('\n');
}
