// Where the DAG view gets ELK from. The layout engine is a large module: it is compiled and run in
// a Web Worker (elk-layout-worker.ts), so opening or growing a DAG never blocks the page; where
// workers are not available it runs in the page.
import ElkApi from 'elkjs/lib/elk-api.js';
import type { ElkLike } from './dag-layout';

let elkPromise: Promise<ElkLike> | null = null;
/** ELK, started on first use (the run form starts it while the user fills it in). */
export function loadElk(): Promise<ElkLike> {
  elkPromise ??= Promise.resolve()
    .then(() => (typeof Worker === 'function' ? workerElk() : inPageElk('no Worker')))
    .catch((err: unknown) => inPageElk(err));
  return elkPromise;
}

function inPageElk(why: unknown): Promise<ElkLike> {
  console.warn('AF Gateway: no layout worker, laying out DAGs in the page', why);
  elkPromise = import('elkjs/lib/elk.bundled.js').then((m) => new (m as unknown as { default: new () => ElkLike }).default());
  return elkPromise;
}

function workerElk(): ElkLike {
  // elkjs's API never answers when its worker dies: layouts waiting then fail (and the stages are
  // placed by depth), and later ones run in the page.
  let broken: Error | null = null;
  const waiting = new Set<(err: Error) => void>();
  const api = new ElkApi({
    workerFactory: () => {
      const worker = new Worker(new URL('./elk-layout-worker.js', import.meta.url));
      worker.addEventListener('error', (ev) => {
        broken = new Error(`the layout worker failed: ${ev.message}`);
        for (const reject of waiting) reject(broken);
        waiting.clear();
        void inPageElk(broken.message);
      });
      return worker;
    },
  });
  return {
    layout: (graph) =>
      broken
        ? Promise.reject(broken)
        : new Promise((resolve, reject) => {
            waiting.add(reject);
            api
              .layout(graph)
              .then(resolve, reject)
              .finally(() => waiting.delete(reject));
          }),
  };
}
