// The settings' defaults in code are the ones schema/plugin.json declares (their only source of truth
// for JupyterLab and the settings editor); the type itself is generated from that file.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SETTINGS } from '../src/api/gateway-settings';

const plugin = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'schema', 'plugin.json'), 'utf8')) as {
  properties: Record<string, { default: unknown }>;
};

describe('settings', () => {
  it('default to what schema/plugin.json says, key for key', () => {
    const declared = Object.fromEntries(Object.entries(plugin.properties).map(([k, p]) => [k, p.default]));
    expect(DEFAULT_SETTINGS).toEqual(declared);
  });
});
