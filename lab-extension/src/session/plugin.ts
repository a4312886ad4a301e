// The session plugin: loads the settings (this plugin's id is the one schema/plugin.json belongs to),
// makes the gateway client and the session every panel shares, starts it, and offers "Log In".
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { GatewayClient } from '../api/gateway-client';
import { effectiveAuthMode, type GatewaySettings, normaliseSettings, resolveGatewayUrl } from '../api/gateway-settings';
import { CATEGORY } from '../components/panel-plugin';
import { currentPage } from '../page-info';
import { GatewaySession } from './gateway-session';
import { IAfGatewaySession } from './tokens';

export const SETTINGS_PLUGIN_ID = '@af-gateway/lab-extension:plugin';
export const LOGIN_COMMAND = 'af:login';

async function loadSettings(registry: ISettingRegistry | null): Promise<{ settings: GatewaySettings; raw: ISettingRegistry.ISettings | null }> {
  if (!registry) return { settings: normaliseSettings(undefined), raw: null };
  try {
    const raw = await registry.load(SETTINGS_PLUGIN_ID);
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
): Promise<IAfGatewaySession> {
  const trans = (translator ?? nullTranslator).load('af_gateway_lab');
  const { settings, raw } = await loadSettings(registry);
  const page = currentPage();
  const client = new GatewayClient({
    baseUrl: resolveGatewayUrl(settings.gatewayUrl, page),
    authMode: effectiveAuthMode(settings.authMode, page),
    username: settings.username,
  });
  const session = new GatewaySession(client, settings);

  raw?.changed.connect(() => {
    const before = session.settings;
    const next = normaliseSettings(raw.composite as Partial<GatewaySettings>);
    session.updateSettings(next);
    if (next.gatewayUrl !== before.gatewayUrl || next.authMode !== before.authMode || next.username !== before.username) {
      Notification.info(trans.__('AF Gateway: reload the page to connect with the new gateway settings.'), { autoClose: 8000 });
    }
  });

  app.commands.addCommand(LOGIN_COMMAND, {
    label: trans.__('Log In to AF Gateway'),
    // a Lab that signs in by user name (basic authentication) has no login page to go to
    isEnabled: () => client.authMode !== 'basic',
    execute: () => session.logIn(),
  });
  palette?.addItem({ command: LOGIN_COMMAND, category: CATEGORY });

  void session.start();
  return session;
}

export const sessionPlugin: JupyterFrontEndPlugin<IAfGatewaySession> = {
  id: SETTINGS_PLUGIN_ID,
  description: 'AF Gateway session: the gateway client, settings, the shared event stream and the login state.',
  autoStart: true,
  provides: IAfGatewaySession,
  optional: [ISettingRegistry, ITranslator, ICommandPalette],
  activate,
};
