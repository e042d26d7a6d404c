/** The `error.type` values of the public error table (PROTOCOL.md). */
export type TeraErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'model_not_found'
  | 'not_found_error'
  | 'rate_limit_error'
  /** OpenAI's type for a spent quota (429, `code: budget_exceeded` here): retrying soon does not help. */
  | 'insufficient_quota'
  | 'server_error'
  | 'service_unavailable';

export interface ErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null };
}

export interface TeraErrorOptions {
  code?: string | null;
  param?: string | null;
  /** Extra response headers, e.g. `Retry-After` or `WWW-Authenticate`. */
  headers?: Record<string, string>;
  cause?: unknown;
}

/** An error a client can act on: the HTTP status, `error.type`, a message, and where relevant `code` and `param`. */
export class TeraError extends Error {
  readonly status: number;
  readonly type: TeraErrorType;
  readonly code: string | null;
  readonly param: string | null;
  readonly headers: Record<string, string>;

  constructor(status: number, type: TeraErrorType, message: string, options: TeraErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TeraError';
    this.status = status;
    this.type = type;
    this.code = options.code ?? null;
    this.param = options.param ?? null;
    this.headers = options.headers ?? {};
  }

  toJSON(): ErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

export const invalidRequest = (message: string, param: string | null = null, code: string | null = null): TeraError =>
  new TeraError(400, 'invalid_request_error', message, { param, code });

export const authenticationError = (message: string, code = 'invalid_api_key'): TeraError =>
  new TeraError(401, 'authentication_error', message, { code, headers: { 'WWW-Authenticate': 'Bearer' } });

export const permissionError = (message: string, code = 'model_not_permitted'): TeraError =>
  new TeraError(403, 'permission_error', message, { code });

export const modelNotFound = (model: string): TeraError =>
  new TeraError(
    404,
    'model_not_found',
    `The model '${model.length > 256 ? `${model.slice(0, 256)}...` : model}' does not exist or you do not have access to it.`,
    {
      code: 'model_not_found',
      param: 'model',
    },
  );

export const rateLimitError = (message: string, retryAfterSeconds: number, code = 'rate_limit_exceeded'): TeraError =>
  new TeraError(429, 'rate_limit_error', message, {
    code,
    headers: { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterSeconds))) },
  });

export const serverError = (message: string, code = 'upstream_error', cause?: unknown): TeraError =>
  new TeraError(500, 'server_error', message, { code, cause });

export const serviceUnavailable = (message: string, retryAfterSeconds = 1, code = 'no_healthy_upstream'): TeraError =>
  new TeraError(503, 'service_unavailable', message, {
    code,
    headers: { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterSeconds))) },
  });

/** The documented shape for anything thrown: a TeraError as is, body-parser style errors by their status, the rest as an opaque 500. */
export function toTeraError(err: unknown): TeraError {
  if (err instanceof TeraError) return err;
  if (typeof err === 'object' && err !== null) {
    const e = err as { status?: unknown; statusCode?: unknown; type?: unknown; expose?: unknown; message?: unknown };
    const status = typeof e.status === 'number' ? e.status : typeof e.statusCode === 'number' ? e.statusCode : 0;
    // Errors from body parsers (express.json, raw-body, koa-bodyparser) carry a client status and a `type`.
    if (e.type === 'entity.too.large' || status === 413) {
      return new TeraError(413, 'invalid_request_error', 'Request body is too large.', { code: 'request_too_large' });
    }
    if (e.type === 'entity.parse.failed') {
      return invalidRequest('We could not parse the JSON body of your request: it is not valid JSON.', null, 'invalid_json');
    }
    if (status >= 400 && status < 500 && e.expose === true && typeof e.message === 'string') {
      return new TeraError(status, 'invalid_request_error', e.message);
    }
  }
  return new TeraError(500, 'server_error', 'The gateway failed to handle this request.', {
    code: 'internal_error',
    cause: err,
  });
}
