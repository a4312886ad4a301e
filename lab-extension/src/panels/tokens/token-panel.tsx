// The Token panel: who the gateway thinks you are, your token's issuer, groups, scopes, audience,
// the time left, the last renewal and how it went, and what to do about problems.
import { ReactWidget, UseSignal } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import { Button } from '@jupyterlab/ui-components';
import React from 'react';
import type { TokenStatus } from '@af-gateway/schemas';
import { ModelPanel } from '../../components/model-panel';
import { formatCountdown, type TokenModel } from './token-model';

export interface TokenActions {
  refresh(): void;
  login(): void;
}

const when = (ms: number | null) => (ms == null ? '—' : new Date(ms).toLocaleString());

function List(props: { items: string[]; empty: string }): JSX.Element {
  if (props.items.length === 0) return <span className="jp-AFToken-muted">{props.empty}</span>;
  return (
    <ul className="jp-AFToken-chips">
      {props.items.map((i) => (
        <li key={i}>{i}</li>
      ))}
    </ul>
  );
}

const SOURCES: Record<TokenStatus['source'], string> = {
  none: 'none',
  request: 'from your last request (not renewed by the gateway)',
  login: 'from your gateway login (renewed by the gateway)',
  'handed-over': 'from a refresh token you handed over (renewed by the gateway)',
  hub: 'from your JupyterHub login (renewed by the gateway)',
};

function TokenView(props: { model: TokenModel; actions: TokenActions; trans: TranslationBundle }): JSX.Element {
  const { model, actions, trans } = props;
  const view = model.view;
  const st = model.status;
  const needsLogin =
    model.canLogin && (view.health === 'login-required' || view.health === 'none' || view.health === 'refresh-failed' || view.health === 'expired');
  const total = st?.expires_at && st.last_refresh ? st.expires_at - st.last_refresh : null;
  const fraction = total && view.secondsLeft !== null ? Math.max(0, Math.min(1, (view.secondsLeft * 1000) / total)) : null;
  return (
    <div className={`jp-AFToken-body mod-${view.health}`}>
      <header className="jp-AFToken-header">
        <h2>{trans.__('Access token')}</h2>
      </header>
      <div className={`jp-AFToken-headline mod-${view.health}`} role="status">
        {view.headline}
      </div>
      {view.secondsLeft !== null && view.secondsLeft > 0 && (
        <div className="jp-AFToken-countdown">
          <span className="jp-AFToken-countdownValue">{formatCountdown(view.secondsLeft)}</span>
          <span className="jp-AFToken-muted"> {trans.__('left')}</span>
          {fraction !== null && (
            <div className="jp-AFToken-meter">
              <div style={{ width: `${Math.round(fraction * 100)}%` }} />
            </div>
          )}
        </div>
      )}
      {/* Only what can work: Refresh now while the gateway holds a refresh token, Log in where a login gives one */}
      {(model.canRefresh || needsLogin) && (
        <div className="jp-AFToken-actions">
          {model.canRefresh && (
            <Button className="jp-mod-styled jp-mod-accept jp-AFToken-refreshNow" disabled={model.refreshing} onClick={() => actions.refresh()}>
              {model.refreshing ? trans.__('Refreshing…') : trans.__('Refresh now')}
            </Button>
          )}
          {needsLogin && (
            <Button className="jp-mod-styled jp-mod-accept jp-AFToken-login" onClick={() => actions.login()}>
              {trans.__('Log in')}
            </Button>
          )}
        </div>
      )}
      {st && st.source !== 'none' && (
        <dl className="jp-AFToken-details">
          <dt>{trans.__('User')}</dt>
          <dd className="jp-AFToken-user">{st.user}</dd>
          <dt>{trans.__('Subject')}</dt>
          <dd>{st.subject ?? '—'}</dd>
          <dt>{trans.__('Issuer')}</dt>
          <dd className="jp-AFToken-issuer">{st.issuer ?? '—'}</dd>
          <dt>{trans.__('Groups')}</dt>
          <dd>
            <List items={st.groups} empty={trans.__('none')} />
          </dd>
          <dt>{trans.__('Scopes')}</dt>
          <dd>
            <List items={st.scopes} empty={trans.__('none')} />
          </dd>
          <dt>{trans.__('Audience')}</dt>
          <dd>
            <List items={st.audience} empty={trans.__('any')} />
          </dd>
          <dt>{trans.__('Expires')}</dt>
          <dd>{when(st.expires_at)}</dd>
          <dt>{trans.__('Source')}</dt>
          <dd>{trans.__(SOURCES[st.source])}</dd>
          <dt>{trans.__('Last refresh')}</dt>
          <dd>{when(st.last_refresh)}</dd>
          <dt>{trans.__('Renewal')}</dt>
          <dd className={`jp-AFToken-refresh mod-${st.refresh.state}`}>
            {st.refresh.state === 'none' ? trans.__('not renewable') : st.refresh.state}
            {st.refresh.message ? ` — ${st.refresh.message}` : ''}
            {st.refresh.next_at ? ` (${trans.__('next at')} ${new Date(st.refresh.next_at).toLocaleTimeString()})` : ''}
          </dd>
          {st.deliveries.length > 0 && (
            <>
              <dt>{trans.__('Token files')}</dt>
              <dd>
                <List items={st.deliveries.map((d) => `${d.target}${d.current ? '' : ' (stale)'}`)} empty="" />
              </dd>
            </>
          )}
        </dl>
      )}
    </div>
  );
}

export class TokenPanel extends ModelPanel<TokenModel, TokenActions> {
  constructor(model: TokenModel, actions: TokenActions, trans: TranslationBundle) {
    super(model, actions, trans, 'jp-AFToken', TokenView);
  }
}

/** Status bar item: minutes left, highlighted near expiry; click opens the Token panel. */
export class TokenStatusItem extends ReactWidget {
  constructor(
    private readonly model: TokenModel,
    private readonly onClick: () => void,
    private readonly trans: TranslationBundle,
  ) {
    super();
    this.addClass('jp-AFTokenStatus');
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this.model.changed}>
        {() => {
          const v = this.model.view;
          let text: string;
          if (v.secondsLeft !== null && v.secondsLeft > 0) text = this.trans.__('Token: %1 min', String(Math.ceil(v.secondsLeft / 60)));
          else if (v.health === 'expired') text = this.trans.__('Token expired');
          else if (v.health === 'loading') text = this.trans.__('Token: …');
          else if (v.health === 'ok') text = this.trans.__('Token: valid');
          else if (v.health === 'not-managed') text = this.trans.__('Token: not used');
          else text = this.trans.__('Token: none');
          // JupyterLab's own text item class: the same font and line box as the items beside it
          return (
            <span className={`jp-StatusBar-TextItem jp-AFTokenStatus-text mod-${v.health}`} title={v.headline} onClick={this.onClick}>
              {text}
            </span>
          );
        }}
      </UseSignal>
    );
  }
}
