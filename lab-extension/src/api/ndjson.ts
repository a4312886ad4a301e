// Rucio's NDJSON streams (application/x-json-stream) arrive in chunks that cut lines anywhere: the
// splitter keeps the unfinished tail until the rest of its line comes, so each row is parsed once whole.

export class NdjsonSplitter {
  private rest = '';

  /** The complete lines in `rest + chunk`; an unfinished last line waits for the next chunk. */
  push(chunk: string): string[] {
    const text = this.rest + chunk;
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    return lines.map((l) => l.trim()).filter((l) => l !== '');
  }

  /** What is left at the end of the stream (a last line without its newline). */
  flush(): string[] {
    const last = this.rest.trim();
    this.rest = '';
    return last ? [last] : [];
  }
}

/** Parses a stream of byte chunks as NDJSON rows, yielding each row as soon as its line is complete. */
export async function* ndjsonRows<T>(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<T> {
  const decoder = new TextDecoder();
  const splitter = new NdjsonSplitter();
  for await (const chunk of chunks) {
    for (const line of splitter.push(decoder.decode(chunk, { stream: true }))) yield JSON.parse(line) as T;
  }
  for (const line of splitter.push(decoder.decode())) yield JSON.parse(line) as T;
  for (const line of splitter.flush()) yield JSON.parse(line) as T;
}

/** A fetch body as an async iterable of chunks (read with a reader: browsers' streams are not iterable everywhere). */
export async function* readerChunks(body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      if (value) yield value;
    }
  } finally {
    // Stopping early (the user opened another dataset) cancels the request instead of draining it.
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
