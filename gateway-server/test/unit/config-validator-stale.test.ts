// The config validator compiled at build time (dist/config-validator.js, ccf90a5) is used only while
// its key matches. Attack: an ajv upgrade (npm ci after a lock change) with the schemas unchanged left
// the key the same, so the gateway kept running code the older ajv generated, which may accept a
// config the installed ajv refuses (or call runtime helpers that changed). The key now holds ajv's version.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { configValidatorKey, configValidatorSource } from '../../src/schemas.js';

const installed = (createRequire(import.meta.url)('ajv/package.json') as { version: string }).version;

describe('the key of the config validator compiled at build time', () => {
  it("changes with ajv's version, not only with the schemas and options", async () => {
    expect(configValidatorKey()).toBe(configValidatorKey(installed));
    expect(configValidatorKey('8.0.0')).not.toBe(configValidatorKey(installed));
    // the generated module carries the key of the installed ajv
    expect(await configValidatorSource()).toContain(`export const key = ${JSON.stringify(configValidatorKey(installed))};`);
  });
});
