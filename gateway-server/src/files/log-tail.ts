// How a process's end is told to a person: the last lines of its log, or why there are none. One
// wording for every backend and for workflow steps.
import { readFile } from 'node:fs/promises';

/** The last `lines` non-trailing lines of a log's text, introduced, or that it is empty. */
export function describeLogTail(text: string, lines = 6): string {
  const tail = text.trimEnd().split('\n').slice(-lines).join('\n');
  return tail ? `last log lines:\n${tail}` : 'its log is empty';
}

/** The last meaningful lines of a process log file: what a person needs to see why it ended. */
export async function logTail(file: string, lines = 6): Promise<string> {
  try {
    return describeLogTail(await readFile(file, 'utf8'), lines);
  } catch {
    return 'no log was written';
  }
}
