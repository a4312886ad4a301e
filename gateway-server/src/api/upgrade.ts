// Shared pieces of WebSocket upgrades, which bypass Fastify's request lifecycle.
import http, { type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '@af-gateway/schemas';
import { AppError } from '../errors.js';

/**
 * Browsers attach cookies to WebSocket handshakes from any site; only a handshake from the gateway's
 * own origin (or a non-browser client, which sends no Origin) may ride on the session cookie.
 */
export function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (!origin) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

/** Answers an upgrade with an HTTP error in the gateway's JSON error format and closes it. */
export function refuseUpgrade(socket: Duplex, err: unknown): void;
export function refuseUpgrade(socket: Duplex, status: number, code: ErrorCode, message: string): void;
export function refuseUpgrade(socket: Duplex, errOrStatus: unknown, code?: ErrorCode, message?: string): void {
  const e =
    typeof errOrStatus === 'number'
      ? new AppError(errOrStatus, code!, message!)
      : errOrStatus instanceof AppError
        ? errOrStatus
        : new AppError(500, 'internal', 'Internal server error');
  const body = JSON.stringify({ error: e.message, code: e.code });
  const extra = Object.entries(e.headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${e.statusCode} ${http.STATUS_CODES[e.statusCode] ?? ''}\r\n${extra}content-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
