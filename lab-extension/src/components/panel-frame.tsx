// The frame every sidebar panel of ours draws: a header with the panel's title and its one
// main button, then the panel's body.
import { Button } from '@jupyterlab/ui-components';
import React from 'react';

export interface PanelFrameProps {
  /** Class of the outer element (e.g. jp-AFClusters-body). */
  className: string;
  /** Class of the header. */
  headerClassName: string;
  title: string;
  button: {
    className: string;
    label: string;
    tooltip: string;
    disabled: boolean;
    onClick: () => void;
  };
  children: React.ReactNode;
}

export function PanelFrame({ className, headerClassName, title, button, children }: PanelFrameProps): JSX.Element {
  return (
    <div className={className}>
      <header className={headerClassName}>
        <h2>{title}</h2>
        <Button className={`jp-mod-styled ${button.className}`} disabled={button.disabled} onClick={button.onClick} title={button.tooltip}>
          {button.label}
        </Button>
      </header>
      {children}
    </div>
  );
}
