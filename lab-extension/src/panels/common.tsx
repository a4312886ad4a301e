// Pieces the sidebar panels share: a clock for ages and countdowns, and what a panel shows while it
// is not connected to the gateway.
import type { TranslationBundle } from '@jupyterlab/translation';
import { Button } from '@jupyterlab/ui-components';
import React, { useEffect, useState } from 'react';

/** The current time, re-rendering every `ms`. */
export function useTick(ms: number): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

/**
 * Log in / try again / connecting, or null once connected. `canLogin` false (a Lab that signs in by
 * user name): no Log in button, which could not work, but where to set the name.
 */
export function ConnectionNotice(props: {
  connection: string;
  error: string | null | undefined;
  login: () => void;
  retry: () => void;
  trans: TranslationBundle;
  canLogin?: boolean;
}): JSX.Element | null {
  const { connection, error, login, retry, trans, canLogin = true } = props;
  if (connection === 'login-required') {
    return (
      <div className="jp-AFClusters-notice">
        <p>{error}</p>
        {canLogin ? (
          <Button className="jp-mod-styled jp-mod-accept" onClick={login}>
            {trans.__('Log in')}
          </Button>
        ) : (
          <p className="jp-AFClusters-muted">
            {trans.__('This Lab signs in to the gateway with a user name (basic authentication): set it under Settings → AF Gateway → User name.')}
          </p>
        )}
      </div>
    );
  }
  if (connection === 'error') {
    return (
      <div className="jp-AFClusters-notice">
        <p className="jp-AFClusters-error">{error}</p>
        <Button className="jp-mod-styled jp-mod-accept" onClick={retry}>
          {trans.__('Try again')}
        </Button>
      </div>
    );
  }
  if (connection === 'connecting') return <div className="jp-AFClusters-muted">{trans.__('Connecting to the gateway…')}</div>;
  return null;
}
