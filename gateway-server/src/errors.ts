// One error type for everything a person may see. `message` is safe to show; `cause` is for the log.
import type { ErrorBody, ErrorCode, RucioErrorCode } from '@af-gateway/schemas';

/** One problem of a rejected document, at its JSON path (error.json's details). */
export type ErrorDetail = NonNullable<ErrorBody['details']>[number];

/** Every code an error answer may carry: listed, each with its meaning, in schemas/json/error.json. */
export type AnyErrorCode = ErrorCode | RucioErrorCode;

export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: AnyErrorCode,
    message: string,
    options?: { cause?: unknown; headers?: Record<string, string>; details?: ErrorDetail[] },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.headers = options?.headers ?? {};
    this.details = options?.details;
  }
  readonly headers: Record<string, string>;
  /** Each problem of a rejected document, with its JSON path (sent as `details`). */
  readonly details?: ErrorDetail[];
}

export const notFound = (what: string) => new AppError(404, 'not_found', `${what} not found`);
export const forbidden = (message: string) => new AppError(403, 'forbidden', message);
export const unprocessable = (message: string, code: ErrorCode = 'invalid_request') => new AppError(422, code, message);
export const conflict = (message: string, code: ErrorCode) => new AppError(409, code, message);

export function errorMessage(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // fetch() says only "fetch failed"; the reason (refused, reset, DNS) is in its cause.
  const cause = err.cause;
  if (err.message === 'fetch failed' && cause instanceof Error && cause.message) return `${err.message} (${cause.message})`;
  return err.message;
}
