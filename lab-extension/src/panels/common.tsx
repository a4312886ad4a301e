// Pieces the sidebar panels share: a clock for ages and countdowns, and what a panel shows while it
// is not connected to the gateway.
import type { TranslationBundle } from '@jupyterlab/translation';
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

/** Log in / try again / connecting, or null once connected. */
export function ConnectionNotice(props: {
  connection: string;
  error: string | null | undefined;
  login: () => void;
  retry: () => void;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { connection, error, login, retry, trans } = props;
  if (connection === 'login-required') {
    return (
      <div className="jp-AFClusters-notice">
        <p>{error}</p>
        <button className="jp-Button jp-mod-styled jp-mod-accept" onClick={login}>
          {trans.__('Log in')}
        </button>
      </div>
    );
  }
  if (connection === 'error') {
    return (
      <div className="jp-AFClusters-notice">
        <p className="jp-AFClusters-error">{error}</p>
        <button className="jp-Button jp-mod-styled jp-mod-reject" onClick={retry}>
          {trans.__('Try again')}
        </button>
      </div>
    );
  }
  if (connection === 'connecting') return <div className="jp-AFClusters-muted">{trans.__('Connecting to the gateway…')}</div>;
  return null;
}
