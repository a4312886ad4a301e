// One error type for everything a person may see. `message` is safe to show; `cause` is for the log.
export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    options?: { cause?: unknown; headers?: Record<string, string> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.headers = options?.headers ?? {};
  }
  readonly headers: Record<string, string>;
}

export const notFound = (what: string) => new AppError(404, 'not_found', `${what} not found`);
export const forbidden = (message: string) => new AppError(403, 'forbidden', message);
export const unprocessable = (message: string, code = 'invalid_request') => new AppError(422, code, message);
export const conflict = (message: string, code = 'conflict') => new AppError(409, code, message);

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
