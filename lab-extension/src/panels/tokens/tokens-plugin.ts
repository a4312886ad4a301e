// The access token as a plugin: the Token sidebar panel, the countdown in the status bar, and the
// commands to show it and to have the gateway renew it now.
import { showErrorMessage } from '@jupyterlab/apputils';
import { IStatusBar } from '@jupyterlab/statusbar';
import { errorText } from '../../components/format';
import { type PanelContext, panelPlugin } from '../../components/panel-plugin';
import { tokenIcon } from '../../icons';
import { TokenModel } from './token-model';
import { TokenPanel, TokenStatusItem } from './token-panel';

export const TokenCommandIds = {
  openToken: 'af:open-token',
  refreshToken: 'af:refresh-token',
} as const;

function activate({ app, session, trans, addSidebar, addToPalette }: PanelContext, statusBar: IStatusBar | null): TokenModel {
  const { commands, shell } = app;
  const model = new TokenModel(session, session.settings.tokenWarningMinutes * 60);
  session.settingsChanged.connect((_s, next) => (model.warnSeconds = next.tokenWarningMinutes * 60));

  const panel = new TokenPanel(model, { refresh: () => void commands.execute(TokenCommandIds.refreshToken), login: () => session.logIn() }, trans);
  const open = { command: TokenCommandIds.openToken, label: trans.__('Show Access Token') };
  addSidebar(panel, { id: 'af-token', icon: tokenIcon, caption: trans.__('Access token (AF Gateway)'), rank: 201 }, open);

  model.changed.connect(() => commands.notifyCommandChanged(TokenCommandIds.refreshToken));

  if (statusBar) {
    const item = new TokenStatusItem(model, () => shell.activateById(panel.id), trans);
    statusBar.registerStatusItem('@af-gateway/lab-extension:token-status', { item, align: 'left', rank: 4 });
  }

  commands.addCommand(TokenCommandIds.refreshToken, {
    label: trans.__('Refresh Access Token Now'),
    // only while the gateway holds a refresh token (never with a user-name login and no provider)
    isEnabled: () => model.canRefresh,
    execute: async () => {
      try {
        await model.refreshNow();
      } catch (err) {
        await showErrorMessage(trans.__('The token was not refreshed'), errorText(err));
      }
    },
  });
  addToPalette(TokenCommandIds.refreshToken);
  return model;
}

export const tokensPlugin = panelPlugin({
  id: '@af-gateway/lab-extension:tokens',
  description: 'AF Gateway: the access token panel and its status bar item.',
  optional: [IStatusBar],
  activate: (ctx, statusBar) => activate(ctx, statusBar as IStatusBar | null),
});
