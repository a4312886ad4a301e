// The access token as a plugin: the Token sidebar panel, the countdown in the status bar, and the
// commands to show it and to have the gateway renew it now.
import { ILayoutRestorer, type JupyterFrontEnd, type JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { errorText } from '../../components/format';
import { addSidebarPanel } from '../../components/sidebar';
import { tokenIcon } from '../../icons';
import { CATEGORY } from '../../session/plugin';
import { IAfGatewaySession } from '../../session/tokens';
import { TokenModel } from './token-model';
import { TokenPanel, TokenStatusItem } from './token-panel';

export const TokenCommandIds = {
  openToken: 'af:open-token',
  refreshToken: 'af:refresh-token',
} as const;

function activate(
  app: JupyterFrontEnd,
  session: IAfGatewaySession,
  translator: ITranslator | null,
  palette: ICommandPalette | null,
  restorer: ILayoutRestorer | null,
  statusBar: IStatusBar | null,
): void {
  const trans = (translator ?? nullTranslator).load('af_gateway_lab');
  const { commands, shell } = app;
  const model = new TokenModel(session, session.settings.tokenWarningMinutes * 60);
  session.settingsChanged.connect((_s, next) => (model.warnSeconds = next.tokenWarningMinutes * 60));

  const panel = new TokenPanel(model, { refresh: () => void commands.execute(TokenCommandIds.refreshToken), login: () => session.logIn() }, trans);
  addSidebarPanel(app, restorer, panel, { id: 'af-token', icon: tokenIcon, caption: trans.__('Access token (AF Gateway)'), rank: 201 });

  if (statusBar) {
    const item = new TokenStatusItem(model, () => shell.activateById(panel.id), trans);
    statusBar.registerStatusItem('@af-gateway/lab-extension:token-status', { item, align: 'left', rank: 4 });
  }

  commands.addCommand(TokenCommandIds.openToken, { label: trans.__('Show Access Token'), icon: tokenIcon, execute: () => shell.activateById(panel.id) });
  commands.addCommand(TokenCommandIds.refreshToken, {
    label: trans.__('Refresh Access Token Now'),
    execute: async () => {
      try {
        await model.refreshNow();
      } catch (err) {
        await showErrorMessage(trans.__('The token was not refreshed'), errorText(err));
      }
    },
  });
  for (const command of [TokenCommandIds.openToken, TokenCommandIds.refreshToken]) palette?.addItem({ command, category: CATEGORY });

  void session.ready.then(() => model.start());
}

export const tokensPlugin: JupyterFrontEndPlugin<void> = {
  id: '@af-gateway/lab-extension:tokens',
  description: 'AF Gateway: the access token panel and its status bar item.',
  autoStart: true,
  requires: [IAfGatewaySession],
  optional: [ITranslator, ICommandPalette, ILayoutRestorer, IStatusBar],
  activate,
};
