// Handler types from the route schemas (a Fastify type provider): `{ $ref: 'x.json' }` is the type
// generated from schemas/json/x.json, and the small inline schemas of path parameters and query
// strings (objects of strings, numbers, booleans and enums) are read as they are written. With
// `app.withTypeProvider<SchemaTypeProvider>()`, request.body, params and query are typed from the
// same schemas ajv validates them with, and what a handler answers is checked against its response
// schema: no hand-written request types, no casts.
import type { FastifyTypeProvider } from 'fastify';
import type { SchemaTypes } from '@af-gateway/schemas';

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type PropertiesOf<S> = S extends { properties: infer P } ? P : object;
type RequiredOf<S> = S extends { required: readonly (infer K)[] } ? K : never;

type ObjectOf<S> = Simplify<
  { -readonly [K in keyof PropertiesOf<S> & RequiredOf<S>]: FromSchema<PropertiesOf<S>[K]> } & {
    -readonly [K in Exclude<keyof PropertiesOf<S>, RequiredOf<S>>]?: FromSchema<PropertiesOf<S>[K]>;
  }
>;

/** What a value valid under the schema S is, as TypeScript sees it. */
export type FromSchema<S> = S extends { $ref: infer R }
  ? R extends keyof SchemaTypes
    ? SchemaTypes[R]
    : // a part of a file (x.json#/$defs/y): the sibling `type` says what it is
      Inline<S>
  : Inline<S>;

type Inline<S> = S extends { enum: readonly (infer E)[] }
  ? E
  : S extends { type: 'string' }
    ? string
    : S extends { type: 'boolean' }
      ? boolean
      : S extends { type: 'integer' | 'number' }
        ? number
        : S extends { type: 'null' }
          ? undefined // the answers without a body (204, 302): reply.send() with nothing
          : S extends { type: 'object' }
            ? ObjectOf<S>
            : S extends { type: 'array'; items: infer I }
              ? FromSchema<I>[]
              : unknown;

/** What may be sent for a response schema: its type, and for text or binary answers a stream or bytes too. */
type Sendable<S> = FromSchema<S> | (S extends { type: 'string' } ? NodeJS.ReadableStream | Buffer : never);

export interface SchemaTypeProvider extends FastifyTypeProvider {
  validator: FromSchema<this['schema']>;
  serializer: Sendable<this['schema']>;
}
