// How a process's end is told to a person: the last lines of its log, or why there are none. One
// wording for every backend and for workflow steps.

/** The last `lines` non-trailing lines of a log's text, introduced, or that it is empty. */
export function describeLogTail(text: string, lines = 6): string {
  const tail = text.trimEnd().split('\n').slice(-lines).join('\n');
  return tail ? `last log lines:\n${tail}` : 'its log is empty';
}
