import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { context } from './context.js';
import { TeraError, toTeraError } from './errors.js';
import { SSE_HEADERS, encodeErrorEvent } from './sse.js';

export type NextFunction = (err?: unknown) => void;
/** The one handler shape every stage has: connect-style over node:http objects. */
export type Middleware = (req: IncomingMessage, res: ServerResponse, next: NextFunction) => void;
export type ErrorMiddleware = (err: unknown, req: IncomingMessage, res: ServerResponse, next: NextFunction) => void;

export function sendJSON(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const payload = JSON.stringify(body);
  res.statusCode = status;
  if (headers) for (const name in headers) res.setHeader(name, headers[name]!);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(payload));
  res.end(payload);
}

export function isEventStream(res: ServerResponse): boolean {
  const type = res.getHeader('Content-Type');
  return typeof type === 'string' && type.startsWith('text/event-stream');
}

/**
 * Answers with the documented error shape. Once a stream has started, the error becomes
 * one SSE error event and the stream ends; once a JSON body has started, the connection
 * is cut (a half-written JSON body must never look complete).
 */
export function sendError(res: ServerResponse, err: unknown): void {
  const error = toTeraError(err);
  if (res.writableEnded || res.destroyed) return;
  if (res.req) {
    const ctx = context(res.req, res);
    ctx.errorType = error.type;
    if (error.code) ctx.errorCode = error.code;
  }
  if (res.headersSent) {
    if (isEventStream(res)) res.end(encodeErrorEvent(error.toJSON()));
    else res.destroy();
    return;
  }
  afterRequestBody(res, () => sendJSON(res, error.status, error.toJSON(), error.headers));
}

/** How much of an unread request body an error answer waits out, at most (bytes, then ms). */
export const LINGER_LIMITS = { bytes: 16 * 1024 * 1024, ms: 3000 } as const;

/**
 * Sends an answer given before the request body was read (a 413, a 401) only once the body has
 * arrived, reading and discarding it within bounds, as nginx's lingering close does. A client
 * that is still uploading when the server answers and closes gets a broken pipe instead of the
 * answer (the openai SDK reports `Connection error.`). Past the bounds the answer goes out and
 * the connection is closed.
 */
function afterRequestBody(res: ServerResponse, send: () => void): void {
  const req = res.req as IncomingMessage | undefined;
  if (!req || req.complete || req.readableEnded || req.destroyed) return send();
  let seen = 0;
  let done = false;
  const finish = (cut: boolean) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('error', onCut);
    req.off('close', onCut);
    if (cut && !res.headersSent) {
      res.setHeader('Connection', 'close');
      res.once('finish', () => req.socket?.destroySoon());
    }
    if (!res.writableEnded && !res.destroyed) send();
  };
  const onData = (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > LINGER_LIMITS.bytes) finish(true);
  };
  const onEnd = () => finish(false);
  const onCut = () => finish(true);
  const timer = setTimeout(onCut, LINGER_LIMITS.ms);
  timer.unref();
  req.on('data', onData);
  req.once('end', onEnd);
  req.once('error', onCut);
  req.once('close', onCut);
  req.resume();
}

/**
 * Sets the status and headers every stream carries. They leave with the first event (one
 * write, one packet), not on their own: a stream starts when there is something to say.
 */
export function startEventStream(res: ServerResponse): void {
  res.statusCode = 200;
  for (const name in SSE_HEADERS) res.setHeader(name, SSE_HEADERS[name]!);
}

export interface ReadBodyOptions {
  /** @defaultValue 4 MiB: a full 131,072-token prompt with tools fits several times over. */
  maxBytes?: number;
}

export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

const tooLarge = (max: number) =>
  new TeraError(413, 'invalid_request_error', `Request body is larger than ${max} bytes.`, {
    code: 'request_too_large',
    headers: { Connection: 'close' },
  });

/**
 * Reads the raw body up to a limit. Over the limit (by Content-Length or by counting) it
 * rejects at once and keeps nothing; `sendError` then reads the rest away within
 * `LINGER_LIMITS` before it answers 413, and closes the connection.
 */
export function readBody(req: IncomingMessage, options: ReadBodyOptions = {}): Promise<Buffer> {
  const max = options.maxBytes ?? DEFAULT_MAX_BODY_BYTES;
  const declared = Number(req.headers['content-length']);
  // Over the limit: refuse without buffering; the error answer reads the rest away (bounded) so the client sees it.
  if (declared > max) return Promise.reject(tooLarge(max));
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        cleanup();
        reject(tooLarge(max));
        return;
      }
      parts.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onAborted = () => {
      cleanup();
      reject(new TeraError(400, 'invalid_request_error', 'The client aborted the request body.', { code: 'client_aborted' }));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

/** Express-style error middleware (four arguments) that answers every error in the documented shape. */
export function errorHandler(): ErrorMiddleware {
  // Four parameters: Express recognises error middleware by arity.
  return function teraErrorHandler(err, req, res, _next) {
    // Errors raised before requestId() ran (a body parser mounted first) still carry an id.
    if (!res.headersSent && !res.hasHeader('X-Tera-Request-ID')) res.setHeader('X-Tera-Request-ID', context(req, res).id);
    sendError(res, err);
  };
}

const CLIENT_ERRORS: Record<string, [status: number, message: string, code: string]> = {
  HPE_HEADER_OVERFLOW: [
    431,
    "The request's headers are larger than this server accepts (Node's maxHeaderSize, 16 KiB by default). Send fewer or shorter headers.",
    'headers_too_large',
  ],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'The request was not received in time.', 'request_timeout'],
};

/**
 * For the host server's `clientError` event (`server.on('clientError', clientErrorHandler())`):
 * what Node refuses before any handler runs (headers over its size limit, a request that is not
 * HTTP, one sent too slowly) is answered in the documented error shape instead of a bare status
 * line, and the connection is closed.
 */
export function clientErrorHandler(): (err: NodeJS.ErrnoException, socket: Duplex) => void {
  return function answerClientError(err, socket) {
    if (!socket.writable || err.code === 'ECONNRESET') return void socket.destroy();
    const [status, message, code] = CLIENT_ERRORS[err.code ?? ''] ?? [400, 'The request could not be read as HTTP.', 'bad_request'];
    const body = JSON.stringify({ error: { message, type: 'invalid_request_error', code, param: null } });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  };
}
