import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { renderConfigReference } from '../scripts/config-reference.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const jsonDir = join(root, 'json');
const files = readdirSync(jsonDir).filter((f) => f.endsWith('.json'));
const load = (f: string) => JSON.parse(readFileSync(join(jsonDir, f), 'utf8')) as Record<string, unknown>;

describe('schemas', () => {
  it('are valid JSON Schema 2020-12 with an $id equal to their file name, and all compile together', () => {
    const ajv = new Ajv2020({ strict: false });
    for (const f of files) {
      const s = load(f);
      expect(s.$schema, f).toBe('https://json-schema.org/draft/2020-12/schema');
      expect(s.$id, f).toBe(f);
      ajv.addSchema(s);
    }
    for (const f of files) expect(() => ajv.getSchema(f), f).not.toThrow();
  });

  it('give every config key a description and a default', () => {
    const missing: string[] = [];
    const walk = (s: Record<string, unknown>, path: string) => {
      for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, Record<string, unknown>>)) {
        const p = path ? `${path}.${k}` : k;
        if (!path.includes('[]')) {
          if (!v.description && v.type !== 'object') missing.push(`${p}: description`);
          if (!('default' in v)) missing.push(`${p}: default`);
        }
        if (v.type === 'object') walk(v, p);
        if (v.type === 'array' && v.items) walk(v.items as Record<string, unknown>, `${p}[]`);
      }
    };
    walk(load('config.json'), '');
    expect(missing).toEqual([]);
  });

  it('match the committed config reference (run npm run build after editing config.json)', () => {
    const committed = readFileSync(join(root, '..', 'docs', 'config-reference.md'), 'utf8');
    expect(renderConfigReference(load('config.json'))).toBe(committed);
  });
});
