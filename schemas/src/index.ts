// The schemas package: JSON Schemas of every wire format (json/), as constants and as types.
export * from './generated/schemas.js';
export type * from './generated/types.js';
