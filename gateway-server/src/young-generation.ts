// Imported first by cli.ts, before the rest of the gateway is loaded: while the gateway boots, V8's
// young generation does not grow. Loading the modules and compiling the config's schema keep much of
// what they allocate, V8 answers such survival by doubling the young generation (up to 2 x 16 MB),
// and an idle gateway then kept those pages: 20 MB of its 107 MB RSS. Once the gateway serves, the
// growth is V8's default again, so a loaded gateway still gets as large a young generation as it needs.
// (A flag given to node, --semi-space-growth-factor or NODE_OPTIONS, is left alone.)
import { setFlagsFromString } from 'node:v8';

/** V8's own value (node --v8-options: --semi-space-growth-factor=2, Node 20). */
const V8_DEFAULT_GROWTH = 2;
const chosen = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => a.includes('semi-space-growth-factor'));

if (!chosen) setFlagsFromString('--semi-space-growth-factor=1');

/** The gateway serves: the young generation may grow again (with load). */
export function youngGenerationMayGrow(): void {
  if (!chosen) setFlagsFromString(`--semi-space-growth-factor=${V8_DEFAULT_GROWTH}`);
}
