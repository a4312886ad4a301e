// Stops every process of the stack (each in its own process group, under its reaper) and removes
// its temporary directory; also runs when tests failed or the global timeout hit.
import { stopStack } from './support/stack.ts';

export default async function globalTeardown(): Promise<void> {
  const started = Date.now();
  await stopStack();
  console.log(`ui-tests stack stopped in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
