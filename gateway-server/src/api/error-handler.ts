// The single error handler: every error becomes {"error": message, "code", "request_id"} with a
// status the dask_gateway client maps (404/422 → ValueError, 409 → GatewayClusterError).
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, type AnyErrorCode } from '../errors.js';
import { formatAjvErrors } from '../schemas.js';

export function errorHandler(err: FastifyError | AppError | Error, req: FastifyRequest, reply: FastifyReply) {
  let status = 500;
  let code: AnyErrorCode = 'internal';
  let message = `Internal server error; quote request id ${req.id} to the administrator`;
  let details: AppError['details'];
  if (err instanceof AppError) {
    status = err.statusCode;
    code = err.code;
    message = err.message;
    details = err.details;
    reply.headers(err.headers);
  } else if ('validation' in err && err.validation) {
    status = 422;
    code = 'invalid_request';
    const where = err.validationContext === 'body' ? 'request body' : (err.validationContext ?? 'request');
    message = `Invalid ${where}: ${formatAjvErrors(err.validation as never)}`;
  } else if ('code' in err && typeof err.code === 'string' && err.code.startsWith('FST_ERR_CTP')) {
    status = err.statusCode ?? 400;
    code = status === 415 ? 'unsupported_media_type' : status === 413 ? 'body_too_large' : 'malformed_body';
    message = status === 400 ? `Malformed JSON body: ${err.message}` : err.message;
  } else if ('statusCode' in err && typeof err.statusCode === 'number' && err.statusCode < 500) {
    status = err.statusCode;
    code = 'bad_request';
    message = err.message;
  }
  if (status >= 500) req.log.error({ err }, 'request failed');
  else req.log.info({ status, code, msg: message }, 'request refused');
  return reply.code(status).send({ error: message, code, request_id: String(req.id), ...(details ? { details } : {}) });
}
