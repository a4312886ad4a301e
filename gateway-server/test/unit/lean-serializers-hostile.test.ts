// The lazily built response serializers (lean boot, ccf90a5) against what a hostile record could leak:
// for every shared schema a route answers with, the serializer built on first use from only the
// schemas it reaches must answer exactly as one built at start from all of them, first and later
// answers alike, and drop fields the schema does not list (a cluster's token, TLS key, a password)
// at the top and in nested objects.
import { describe, expect, it } from 'vitest';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import { allSchemas } from '@af-gateway/schemas';
import { lazySerializers } from '../../src/schemas.js';

type Schema = Record<string, unknown>;
// (as app.ts hands them to Fastify: without the 2020-12 dialect marker)
const shared: Record<string, Schema> = Object.fromEntries(
  allSchemas.map((s) => {
    const { $schema: _dialect, ...rest } = structuredClone(s) as Schema;
    return [rest.$id as string, rest];
  }),
);

const SECRETS = { token: 'SECRET-token-1', tlsKey: 'SECRET-key-2', password: 'SECRET-pw-3', __proto_leak: 'SECRET-x-4' };

function resolve(ref: string, base: string): { schema: Schema; base: string } {
  const [file, pointer = ''] = ref.split('#');
  const id = file || base;
  let node: unknown = shared[id];
  for (const part of pointer.split('/').filter(Boolean)) node = (node as Schema)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  return { schema: node as Schema, base: id };
}

/** A value of `schema` with every listed property filled, and secret fields added to each object. */
function instance(schema: Schema, base: string, depth = 0): unknown {
  if (depth > 12) return null;
  if (typeof schema.$ref === 'string') {
    const r = resolve(schema.$ref, base);
    return instance(r.schema, r.base, depth + 1);
  }
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum)) return schema.enum[0];
  for (const k of ['anyOf', 'oneOf', 'allOf'] as const) if (Array.isArray(schema[k])) return instance((schema[k] as Schema[])[0]!, base, depth + 1);
  const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string | undefined];
  const type = types.find((t) => t !== 'null') ?? types[0] ?? (schema.properties ? 'object' : undefined);
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries((schema.properties ?? {}) as Record<string, Schema>)) out[k] = instance(v, base, depth + 1);
      // (an open object, such as a cluster's options, passes unlisted fields by design: no secret put there)
      const open = (schema.additionalProperties !== undefined && schema.additionalProperties !== false) || schema.patternProperties;
      return open ? out : { ...SECRETS, ...out }; // (a field the schema lists keeps its value)
    }
    case 'array':
      return schema.items ? [instance(schema.items as Schema, base, depth + 1)] : [];
    case 'string':
      return schema.format === 'date-time' ? '2026-12-07T12:00:00Z' : 'x';
    case 'integer':
    case 'number':
      return 1;
    case 'boolean':
      return true;
    case 'null':
      return null;
    default:
      return 'x';
  }
}

function outcome(serialize: (doc: unknown) => string, doc: unknown): string {
  try {
    return serialize(doc);
  } catch (err) {
    return `threw: ${(err as Error).message}`;
  }
}

describe('response serializers built on first use', () => {
  it('answer as the ones built at start, for every shared schema, first and later answers, and leak no unlisted field', () => {
    const eagerFactory = SerializerSelector()(shared, {});
    const lazyFactory = lazySerializers(SerializerSelector())(shared, {});
    const leaks: string[] = [];
    let compared = 0;
    for (const id of Object.keys(shared)) {
      const route = { method: 'GET', url: `/probe/${id}`, httpStatus: '200', schema: { $ref: id } };
      let eager: (doc: unknown) => string;
      try {
        eager = eagerFactory(route);
      } catch (err) {
        // (a schema fast-json-stringify cannot build at start cannot be built lazily either)
        eager = () => {
          throw err;
        };
      }
      const lazy = lazyFactory(route);
      const doc = instance(shared[id]!, id);
      const first = outcome(lazy, doc);
      expect(first, id).toBe(outcome(eager, doc));
      expect(outcome(lazy, doc), `${id}, second answer`).toBe(first);
      compared++;
      if (first.includes('SECRET')) leaks.push(`${id}: …${first.slice(Math.max(0, first.indexOf('SECRET') - 80), first.indexOf('SECRET') + 20)}`);
    }
    expect(compared).toBeGreaterThan(30);
    expect(leaks).toEqual([]);
  });

  it("drop a cluster record's token, TLS key and password from the cluster answers", () => {
    const lazyFactory = lazySerializers(SerializerSelector())(shared, {});
    for (const id of ['cluster.json', 'af-cluster.json', 'cluster-list.json', 'af-cluster-list.json', 'create-cluster-result.json', 'connect-info.json']) {
      if (!shared[id]) continue;
      const serialize = lazyFactory({ method: 'GET', url: `/c/${id}`, httpStatus: '200', schema: { $ref: id } });
      const doc = instance(shared[id], id);
      for (let i = 0; i < 2; i++) {
        const text = serialize(doc);
        for (const s of Object.values(SECRETS)) expect(text, `${id} #${i + 1}`).not.toContain(s);
      }
    }
  });
});
