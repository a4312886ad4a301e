// Subworkflows give a run scopes: a stage that runs a workflow makes one scope per scheduled item,
// named after the stage and the item's index (`nested[0]`), in which the subworkflow's stages live
// under scoped names (`nested[0].stage1`, and deeper `a[0].b[2].c`). A stage name cannot hold `[`,
// so `[INDEX].` separates the levels even though names may hold dots. Selectors read the same way:
// `stage1` inside a scope is that scope's stage1; `nested[*].stage1` is stage1 of every scope of
// nested; `init` inside a scope is the subworkflow's own parameters.
import { posix } from 'node:path';
import type { WorkflowSpec } from '@af-gateway/schemas';
import type { RunRecord, StageRecord, StageSpec } from './model.js';

/** The full name of a stage in a scope (the root scope is ''). */
export const scoped = (scope: string, name: string) => (scope ? `${scope}.${name}` : name);

/** `a[0].b[1].c` → the stages whose scopes hold it: [`a`, `a[0].b`]. */
export function ancestorStages(fullName: string): string[] {
  const out: string[] = [];
  for (const m of fullName.matchAll(/\[\d+\]\./g)) out.push(fullName.slice(0, m.index));
  return out;
}

/** The scope a full stage name lives in ('' at the root) and its own name. */
export function splitScoped(fullName: string): { scope: string; name: string } {
  const all = [...fullName.matchAll(/\[\d+\]\./g)];
  const last = all[all.length - 1];
  if (!last) return { scope: '', name: fullName };
  const end = last.index + last[0].length;
  return { scope: fullName.slice(0, end - 1), name: fullName.slice(end) };
}

/** The directory of a stage (or a scope) under the run's workspace: `a[0].b` → a/0/b, `a[0]` → a/0. */
export function stageDir(fullName: string): string {
  return posix.join(...fullName.split(/\[(\d+)\](?:\.|$)/).filter((p) => p !== ''));
}

/** One level of a selector: a stage name and an optional index or `*`. */
export interface SelectorPart {
  name: string;
  index?: number | '*';
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
const LAST = /^([A-Za-z0-9_][A-Za-z0-9_.-]{0,63}?)(?:\[(\d+|\*)\])?$/;
const index = (x: string): number | '*' => (x === '*' ? '*' : Number(x));

/** `nested[*].stage1[2]` → parts (every part but the last selects scopes, so has an index); null when it is not a selector. */
export function parseSelector(expr: string): SelectorPart[] | null {
  // JSONPath also writes an index after a dot (`map.[*].stage1`): the same selector
  const pieces = expr
    .trim()
    .replace(/\.\[(\d+|\*)\]/g, '[$1]')
    .split(/\[(\d+|\*)\]\./);
  const parts: SelectorPart[] = [];
  for (let i = 0; i + 1 < pieces.length - 1; i += 2) {
    if (!NAME.test(pieces[i]!)) return null;
    parts.push({ name: pieces[i]!, index: index(pieces[i + 1]!) });
  }
  const m = LAST.exec(pieces[pieces.length - 1]!);
  if (!m) return null;
  parts.push({ name: m[1]!, index: m[2] === undefined ? undefined : index(m[2]) });
  return parts;
}

/** The spec a JSON pointer into the run's workflow names (a subworkflow's stage). */
export function specAt(spec: WorkflowSpec, pointer: string): StageSpec {
  let at: unknown = spec;
  for (const key of pointer.split('/').slice(1)) at = (at as Record<string, unknown>)[key.replace(/~1/g, '/').replace(/~0/g, '~')];
  if (!at || typeof at !== 'object') throw new Error(`the workflow has no stage at ${pointer}`);
  return at as StageSpec;
}

/** The spec of a stage record: a root stage by its name, a subworkflow's by its pointer. */
export function stageSpecOf(run: RunRecord, stage: StageRecord): StageSpec {
  if (stage.spec) return specAt(run.spec, stage.spec);
  const found = run.spec.stages.find((s) => s.name === stage.name);
  if (!found) throw new Error(`the workflow has no stage ${stage.name}`);
  return found;
}
