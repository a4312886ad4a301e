// The step-file protocol: what lives under a workflow step's `.af/` directory, and under the run's.
// The gateway writes a step's command and wrapper there before each attempt; the wrapper (run by the
// backend as the step's owner) appends the step's output to the log and writes the exit code last;
// the engine reads the exit code and the log's tail, the routes stream the log, and a backend that
// keeps a job's own output (a pod's log, a batch job's files) puts it there too.
//
// The step's directory is writable by the step, so everything here is read and written without
// following links out of the run's workspace (files/no-follow.ts).
import { join } from 'node:path';
import { errorMessage } from '../errors.js';
import { describeLogTail } from '../files/log-tail.js';
import { mkdirConfined, readConfined, removeConfined, replaceConfined } from '../files/no-follow.js';

/** The directory, inside a step's (or a run's) directory, that holds the gateway's files. */
export const STEP_DIR = '.af';

/** Files the gateway writes for a step: the step's account reads them through the run's ACL (a mask needs group bits). */
export const STEP_FILE_MODE = 0o660;

export interface StepFiles {
  /** DIR/.af */
  dir: string;
  /** The step's command, as rendered from the workflow (run by the step's interpreter). */
  command: string;
  /** The shell script a backend runs for the step (step-wrapper.ts). */
  wrapper: string;
  /** stdout and stderr of every attempt, appended by the wrapper. */
  log: string;
  /** The exit code of the last attempt, one line, written by the wrapper when the command ended. */
  exitCode: string;
  /** Where the wrapper writes the exit code first, to rename it into place whole. */
  exitCodePart: string;
  /** A Kubernetes step's pod output, kept by the gateway when the workspace is not shared with the pod. */
  podLog: string;
  /** The owner's access token while the step runs (BEARER_TOKEN_FILE: WLCG token discovery), renewed as the broker renews it. */
  bearerToken: string;
}

/** The names of a step's files, given its directory. */
export function stepFiles(workdir: string): StepFiles {
  const dir = join(workdir, STEP_DIR);
  return {
    dir,
    command: join(dir, 'command'),
    wrapper: join(dir, 'run.sh'),
    log: join(dir, 'log'),
    exitCode: join(dir, 'exit-code'),
    exitCodePart: join(dir, 'exit-code.part'),
    podLog: join(dir, 'pod.log'),
    bearerToken: join(dir, 'bearer-token'),
  };
}

/** Where a run keeps the workflow's files as they were submitted. */
export function keptWorkflowDir(workspace: string): string {
  return join(workspace, STEP_DIR, 'workflow');
}

/**
 * Prepares a step's `.af/` for an attempt: the directory exists, the last attempt's exit code is gone
 * (so an attempt that never ends cleanly is not mistaken for the last one), and the command and the
 * wrapper are written afresh.
 */
export async function writeStepFiles(
  root: string,
  files: StepFiles,
  command: string,
  wrapper: string,
  extra: { file: string; text: string }[] = [],
): Promise<void> {
  await mkdirConfined(root, files.dir);
  await removeConfined(root, files.exitCode);
  await replaceConfined(root, files.command, command, STEP_FILE_MODE);
  await replaceConfined(root, files.wrapper, wrapper, STEP_FILE_MODE);
  // e.g. par_mounts, by the command's side
  for (const { file, text } of extra) await replaceConfined(root, file, text, STEP_FILE_MODE);
}

/** The exit code the wrapper wrote, or undefined when there is none (killed, removed, unreadable). */
export async function readExitCode(root: string, files: StepFiles): Promise<number | undefined> {
  const text = ((await readConfined(root, files.exitCode, 64).catch(() => null)) ?? '').trim();
  return text === '' ? undefined : Number(text);
}

/** The last lines of a step's log, read without following anything the step planted. */
export async function readLogTail(root: string, files: StepFiles, lines: number): Promise<string> {
  try {
    const text = await readConfined(root, files.log, 64 * 1024);
    return text === null ? 'no log was written' : describeLogTail(text, lines);
  } catch (err) {
    return `its log could not be read (${errorMessage(err)})`;
  }
}
