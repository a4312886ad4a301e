// Compiles the config's validator ahead, at build time (npm run build, after tsc): the gateway then
// loads dist/config-validator.js instead of compiling the config schema at every start (150-270 ms
// of CPU). The file carries the key of what it was made from; schemas.ts compiles at start instead
// when the key differs (a schema changed and only tsc ran).
import { rmSync, writeFileSync } from 'node:fs';

const out = new URL('../dist/config-validator.js', import.meta.url);
rmSync(out, { force: true }); // (schemas.js loads it when present: not the one being replaced)
const { configValidatorSource } = await import('../dist/schemas.js');
const source = await configValidatorSource();
writeFileSync(out, source);
console.log(`compile-config-validator: ${out.pathname} (${source.length} bytes)`);
