// Waiting in tests for a model to reach a state: checked at once and on each change signal, with
// what the model looked like in the error when the time runs out.
import type { ISignal } from '@lumino/signaling';

export function until(changed: ISignal<unknown, unknown>, pred: () => boolean, describe: () => string, ms = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (pred()) return resolve();
    const t = setTimeout(() => {
      changed.disconnect(check);
      reject(new Error(`condition not met within ${ms} ms; ${describe()}`));
    }, ms);
    const check = () => {
      if (!pred()) return;
      clearTimeout(t);
      changed.disconnect(check);
      resolve();
    };
    changed.connect(check);
  });
}
