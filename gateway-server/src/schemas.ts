// The ajv instances (JSON Schema 2020-12) that validate every request and the config, loaded with
// every schema from the schemas package so $refs between files resolve.
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { allSchemas } from '@af-gateway/schemas';

function makeAjv(coerce: boolean): Ajv2020 {
  const ajv = new Ajv2020({
    allErrors: true,
    useDefaults: true,
    coerceTypes: coerce ? 'array' : false,
    removeAdditional: false,
    strict: false,
  });
  for (const s of allSchemas) ajv.addSchema(structuredClone(s) as object);
  return ajv;
}

/** Bodies and the config: no type coercion (a string "2" is not a count). */
export const bodyAjv = makeAjv(false);
/** Query strings and path parameters arrive as strings and are coerced. */
export const queryAjv = makeAjv(true);

/** "count: must be >= 0; cluster_options: must be object" — paths a person can find in their request. */
export function formatAjvErrors(errors: ErrorObject[] | null | undefined, root = ''): string {
  if (!errors?.length) return 'invalid';
  const parts = errors.map((e) => {
    let path = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
    if (e.keyword === 'required') path = [path, (e.params as { missingProperty: string }).missingProperty].filter(Boolean).join('.');
    if (e.keyword === 'additionalProperties') {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      return `${[root, path].filter(Boolean).join('.') || '(root)'}: unknown key "${extra}"`;
    }
    if (e.keyword === 'enum') {
      return `${[root, path].filter(Boolean).join('.')}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    }
    return `${[root, path].filter(Boolean).join('.') || '(root)'}: ${e.message ?? 'invalid'}`;
  });
  return [...new Set(parts)].join('; ');
}
