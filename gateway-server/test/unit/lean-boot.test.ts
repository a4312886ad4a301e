// What the lean boot (issue 22, item 3) defers must behave as if built at start: route validators
// compiled on first use, response serializers built on first use from the schemas they reach, and
// the config validator compiled at build time giving the verdicts, errors and defaults of the one
// compiled at start.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { SerializerFactory } from '@fastify/fast-json-stringify-compiler';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import { bodyAjv, configValidatorSource, lazySerializers, lazyValidator, reachable } from '../../src/schemas.js';

// (under the repository's node_modules, so that the module finds ajv's runtime as the built one does)
const cache = fileURLToPath(new URL('../../../node_modules/.cache', import.meta.url));
mkdirSync(cache, { recursive: true });
const dir = mkdtempSync(join(cache, 'af-lean-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('reachable', () => {
  it('gives the shared schemas a schema refers to, through one another, and no others', () => {
    const shared = {
      'a.json': { $id: 'a.json', properties: { b: { $ref: 'b.json#/$defs/x' } } },
      'b.json': { $id: 'b.json', $defs: { x: { type: 'string' } }, items: { $ref: '#/$defs/x' } },
      'c.json': { $id: 'c.json' },
    };
    expect(Object.keys(reachable({ anyOf: [{ $ref: 'a.json' }, { $ref: '#/local' }, { $ref: 'unknown.json' }] }, shared)).sort()).toEqual(['a.json', 'b.json']);
    expect(reachable({ type: 'object' }, shared)).toEqual({});
  });
});

describe('lazyValidator', () => {
  it('compiles on the first call, and exposes the errors and schemaEnv of the compiled function', () => {
    const broken = lazyValidator({ type: 'no-such-type' }, 'body');
    expect(() => broken({})).toThrow(); // refused only when first used
    const v = lazyValidator({ type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] }, 'query');
    expect(v.schemaEnv).toBeDefined();
    expect(v({ n: '2' })).toBe(true); // query strings are coerced
    expect(v({})).toBe(false);
    expect(v.errors?.[0]?.keyword).toBe('required');
    const body = lazyValidator({ $ref: 'scale.json' }, 'body');
    expect(body({ count: '2' })).toBe(false); // bodies are not
    expect(body({ count: 2 })).toBe(true);
  });
});

describe('lazySerializers', () => {
  it('builds a route serializer on its first use, given only the shared schemas it reaches', () => {
    const given: string[][] = [];
    const real = SerializerSelector();
    const spy: SerializerFactory = (external, options) => {
      given.push(Object.keys(external as object).sort());
      return real(external, options);
    };
    const shared = {
      'error.json': { $id: 'error.json', type: 'object', properties: { error: { type: 'string' } } },
      'other.json': { $id: 'other.json', type: 'object' },
    };
    const serialize = lazySerializers(spy)(shared, {})({ method: 'GET', url: '/x', httpStatus: '404', schema: { $ref: 'error.json' } });
    expect(given).toEqual([]);
    expect(serialize({ error: 'gone', secret: 'not in the schema' })).toBe('{"error":"gone"}');
    expect(serialize({ error: 'again' })).toBe('{"error":"again"}');
    expect(given).toEqual([['error.json']]);
  });
});

describe('the config validator compiled at build time', () => {
  it('gives the verdicts, errors and filled defaults of the one compiled at start', async () => {
    const file = join(dir, 'config-validator.mjs');
    writeFileSync(file, await configValidatorSource());
    const built = (await import(pathToFileURL(file).href)) as { default: (d: unknown) => boolean & { errors?: unknown } };
    const atStart = bodyAjv.getSchema('config.json')!;
    const docs: unknown[] = [
      {},
      { listen: 5 },
      { auth: { type: 'nope' } },
      { backend: { type: 'local', local: { prefork: 'x' } } },
      { bogus: 1 },
      { accounts: { name_template: 'no placeholder' } },
      { rucio: { instances: [{ name: 'a' }] } },
      { worker_groups: [{ name: 'g', backend: { type: 'slurm' } }] },
      { allowed_hosts: [''] },
    ];
    for (const doc of docs) {
      const a = structuredClone(doc);
      const b = structuredClone(doc);
      const validate = built.default as unknown as { (d: unknown): boolean; errors?: unknown };
      expect(validate(a), JSON.stringify(doc)).toBe(atStart(b));
      expect(validate.errors ?? null).toEqual(atStart.errors ?? null);
      expect(a).toEqual(b);
    }
  });
});
