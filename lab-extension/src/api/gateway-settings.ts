// How the extension reaches the gateway: resolved from the user's settings and the page it runs in.
import type { LabSettings } from '@af-gateway/schemas';

/**
 * The user's settings with every key filled in. Their schema is schema/plugin.json (what JupyterLab
 * validates and the settings editor shows); the type is generated from it as LabSettings.
 */
export type GatewaySettings = Required<LabSettings>;

export type AuthMode = GatewaySettings['authMode'];

export const DEFAULT_SETTINGS: GatewaySettings = {
  gatewayUrl: '',
  authMode: 'auto',
  username: '',
  defaultClusterOptions: {},
  tokenWarningMinutes: 10,
  rucioInstance: '',
  rucioScheme: '',
};

export const SERVICE_NAME = 'af-gateway';

/** What the page tells us about where it runs (JupyterLab's PageConfig, or a test's stand-in). */
export interface PageInfo {
  origin: string;
  /** The Jupyter server's base URL path, e.g. /user/alice/ behind JupyterHub. */
  baseUrl: string;
  /** JupyterHub's prefix, e.g. /hub/, when the Lab runs as a Hub single-user server. */
  hubPrefix: string;
}

/**
 * The gateway's base URL, always ending in '/'. Accepts a full URL, an absolute path on the
 * page's origin, or a path relative to the Jupyter base URL (e.g. proxy/8000/ on Binder).
 */
export function resolveGatewayUrl(setting: string, page: PageInfo): string {
  const withSlash = (u: string) => (u.endsWith('/') ? u : `${u}/`);
  const value = setting.trim();
  if (!value) {
    // A Hub registers services next to itself: <prefix>hub/ -> <prefix>services/<name>/.
    const root = page.hubPrefix ? page.hubPrefix.replace(/hub\/?$/, '') : '/';
    return `${page.origin}${withSlash(root)}services/${SERVICE_NAME}/`;
  }
  if (/^https?:\/\//.test(value)) return withSlash(value);
  if (value.startsWith('/')) return `${page.origin}${withSlash(value)}`;
  return `${page.origin}${withSlash(page.baseUrl)}${withSlash(value)}`;
}

/** The authentication the browser uses: 'auto' means the Hub's when behind one, else the gateway's own login. */
export function effectiveAuthMode(mode: AuthMode, page: PageInfo): Exclude<AuthMode, 'auto'> {
  if (mode !== 'auto') return mode;
  return page.hubPrefix ? 'jupyterhub' : 'session';
}

export function normaliseSettings(raw: Partial<GatewaySettings> | undefined): GatewaySettings {
  const s = { ...DEFAULT_SETTINGS, ...(raw ?? {}) };
  const modes: AuthMode[] = ['auto', 'session', 'jupyterhub', 'basic'];
  if (!modes.includes(s.authMode)) s.authMode = 'auto';
  if (!(s.tokenWarningMinutes > 0)) s.tokenWarningMinutes = DEFAULT_SETTINGS.tokenWarningMinutes;
  if (typeof s.rucioInstance !== 'string') s.rucioInstance = '';
  if (!['', 'davs', 'root'].includes(s.rucioScheme)) s.rucioScheme = '';
  return s;
}
