// The shell script a backend runs for a workflow step (`/bin/sh .af/run.sh`): it appends the step's
// output to the step's log under a line naming the attempt, runs the command in the step's
// directory with the step's interpreter, and writes the exit code (whole, by a rename) for the
// engine to read. The script's text is the template step-wrapper.sh, read once; its @NAME@
// placeholders are filled here, each value shell-quoted unless it is one of the two raw ones.
//
// The template is read from gateway-server/src/workflows whether this module runs from src (tests)
// or from dist (both are two levels below gateway-server/); the container images copy it there.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { StepFiles } from './step-files.js';

export const STEP_WRAPPER_TEMPLATE = fileURLToPath(new URL('../../src/workflows/step-wrapper.sh', import.meta.url));

let template: string | undefined;

/** Reads the template (once; the engine does at its start, so a missing file stops the gateway, not a step). */
export function loadStepWrapperTemplate(): string {
  return (template ??= readFileSync(STEP_WRAPPER_TEMPLATE, 'utf8'));
}

/** One word for /bin/sh, whatever it holds: single-quoted, a single quote as '\''. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Fills a template's @NAME@ placeholders: `quoted` values as one shell word each, `raw` values as
 * they are (the caller vouches for them). A placeholder without a value, or a value without a
 * placeholder, is an error: the template and its filler must agree.
 */
export function fillTemplate(text: string, quoted: Record<string, string>, raw: Record<string, string> = {}): string {
  const values = new Map<string, string>();
  for (const [k, v] of Object.entries(quoted)) values.set(k, shellQuote(v));
  for (const [k, v] of Object.entries(raw)) values.set(k, v);
  const used = new Set<string>();
  const out = text.replace(/@([A-Z][A-Z_]*)@/g, (_, name: string) => {
    const v = values.get(name);
    if (v === undefined) throw new Error(`the template's placeholder @${name}@ has no value`);
    used.add(name);
    return v;
  });
  const unused = [...values.keys()].filter((k) => !used.has(k));
  if (unused.length) throw new Error(`the template has no placeholder for ${unused.map((k) => `@${k}@`).join(', ')}`);
  return out;
}

export interface StepWrapperValues {
  /** What the attempt is, for people: the script's comment and the line it writes into the log. */
  header: string;
  /** The step's directory, where the command runs. */
  workdir: string;
  /** The program (and its words) that runs the command file; letters, digits, _ . / + - and single spaces (workflow-spec.json). */
  interpreter: string;
  files: Pick<StepFiles, 'log' | 'command' | 'exitCode' | 'exitCodePart'>;
}

/** The wrapper script for one attempt of a step. */
export function stepWrapper(v: StepWrapperValues): string {
  if (!/^[A-Za-z0-9_./+-]+( [A-Za-z0-9_./+-]+)*$/.test(v.interpreter))
    throw new Error(`the interpreter ${JSON.stringify(v.interpreter.slice(0, 100))} is not a program and its words`);
  return fillTemplate(
    loadStepWrapperTemplate(),
    {
      LOG: v.files.log,
      BANNER: `--- ${v.header} ---`,
      WORKDIR: v.workdir,
      COMMAND: v.files.command,
      EXIT_CODE_PART: v.files.exitCodePart,
      EXIT_CODE: v.files.exitCode,
    },
    // a comment ends at a line's end: the header stays one line
    { HEADER: v.header.replace(/[\r\n]+/g, ' '), INTERPRETER: v.interpreter },
  );
}
