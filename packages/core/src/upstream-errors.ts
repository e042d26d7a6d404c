import { TeraError } from './errors.js';

interface VllmErrorFields {
  message?: unknown;
  type?: unknown;
  param?: unknown;
  code?: unknown;
}

/** vLLM answers errors flat (`{"object":"error",...}`, older releases) or nested (`{"error":{...}}`); read both. */
export function readUpstreamError(body: unknown): { message: string; param: string | null } {
  let fields: VllmErrorFields = {};
  if (typeof body === 'object' && body !== null) {
    const b = body as { error?: unknown };
    fields = typeof b.error === 'object' && b.error !== null ? b.error : body;
  }
  return {
    message: typeof fields.message === 'string' && fields.message ? fields.message : 'The upstream model server returned an error.',
    param: typeof fields.param === 'string' ? fields.param : null,
  };
}

const CONTEXT_OVERFLOW = /maximum context length/i;

/** The longest upstream 4xx message passed to a caller; vLLM's messages about a request are far shorter. */
export const MAX_UPSTREAM_MESSAGE = 500;

/** What a caller reads when a replica failed: fixed text, since a replica's 5xx body may hold a traceback, an address or a key. */
export const UPSTREAM_FAILED_MESSAGE =
  'The model server failed to answer. Retry with backoff; if it persists, report the X-Tera-Request-ID of this response.';

/**
 * An upstream error in the public table. The caller's mistakes (vLLM's 400s) stay 400s with
 * vLLM's message, length-capped; context overflow gets OpenAI's `context_length_exceeded`.
 * Anything that is the deployment's fault (auth to the upstream, a missing model, 5xx) is a
 * `server_error` with a fixed message: the upstream's text goes to spans, never to the caller.
 */
export function toPublicUpstreamError(status: number, body: unknown): TeraError {
  const { message, param } = readUpstreamError(body);
  if (status === 400 || status === 422) {
    const code = CONTEXT_OVERFLOW.test(message) ? 'context_length_exceeded' : 'invalid_request';
    const capped = message.length > MAX_UPSTREAM_MESSAGE ? `${message.slice(0, MAX_UPSTREAM_MESSAGE)}...` : message;
    return new TeraError(400, 'invalid_request_error', capped, { code, param: code === 'context_length_exceeded' ? 'messages' : param });
  }
  if (status === 429 || status === 503) {
    return new TeraError(503, 'service_unavailable', 'The model server is overloaded; retry shortly.', {
      code: 'upstream_overloaded',
      headers: { 'Retry-After': '1' },
    });
  }
  return new TeraError(500, 'server_error', UPSTREAM_FAILED_MESSAGE, { code: 'upstream_error' });
}
