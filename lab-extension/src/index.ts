// The AF Gateway extension: a session plugin (settings, the gateway client, the one event stream and
// the login state, as the IAfGatewaySession token) and one plugin per panel that asks for it.
import type { JupyterFrontEndPlugin } from '@jupyterlab/application';
import { clustersPlugin } from './panels/clusters/clusters-plugin';
import { rucioPlugin } from './panels/rucio/rucio-plugin';
import { tokensPlugin } from './panels/tokens/tokens-plugin';
import { workflowsPlugin } from './panels/workflows/workflows-plugin';
import { sessionPlugin } from './session/plugin';

export { IAfGatewaySession } from './session/tokens';
export type { EventFilter, LoginState } from './session/tokens';

const plugins: JupyterFrontEndPlugin<unknown>[] = [sessionPlugin, clustersPlugin, tokensPlugin, rucioPlugin, workflowsPlugin];

export default plugins;
