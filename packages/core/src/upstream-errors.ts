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

/*
 * How the gateway reads a replica's failure, in one place. Three owners, three treatments:
 *
 * - the replica (connect errors, resets, timeouts, 502/503/504, a 5xx that is not vLLM's JSON
 *   error, an engine that died): retried on another replica, counted against its breaker;
 * - the model's output (Harmony parser errors whatever the status or framing, empty
 *   completions, structured output that breaks its schema): it depends on sampling, so it is
 *   retried, on the same replica when no other is ready, and never counted against a breaker;
 * - the request (vLLM's 400s about it: context length, a bad parameter): answered, never retried.
 *
 * A 500 carrying vLLM's JSON error object for anything else is an exception raised while vLLM
 * handled this request: the server is up and answering, so the request, not the replica, is
 * the likely cause. It is retried elsewhere but not counted, so a tenant cannot open a
 * replica's breaker for everyone with crafted requests; a replica whose engine really died
 * says so (EngineDeadError, "EngineCore encountered an issue") and fails its health checks.
 */

export type ModelFailureKind = 'harmony_error' | 'empty_completion' | 'schema_violation' | 'invalid_json';

const DESCRIPTIONS: Record<ModelFailureKind, string> = {
  harmony_error: 'output that vLLM could not parse (a Harmony format error)',
  empty_completion: 'an empty completion (no text, reasoning or tool call)',
  schema_violation: 'output that does not match the response_format schema',
  invalid_json: 'output that is not the JSON response_format asked for',
};

/** The model's output failed; nothing is wrong with the replica or the request. */
export class ModelOutputFailure extends Error {
  constructor(
    readonly kind: ModelFailureKind,
    readonly detail: string,
  ) {
    super(`${kind}: ${detail}`);
    this.name = 'ModelOutputFailure';
  }

  static describe(kind: ModelFailureKind): string {
    return DESCRIPTIONS[kind];
  }
}

/** vLLM answered this request with a JSON 500: retried on another replica, not counted against this one. */
export class RequestFailure extends Error {
  constructor(readonly detail: string) {
    super(detail);
    this.name = 'RequestFailure';
  }
}

// Messages of openai-harmony's parser as vLLM relays them (vllm#22515, #22519, #23567, #46464, #50690; openai/harmony#38, #60).
const HARMONY_ERROR =
  /HarmonyError|while expecting start token|unexpected tokens remaining in message header|Unknown role|channel marker present but no channel value|openai_harmony/i;
// vLLM's words for an engine that is gone: every request on this replica will fail.
const ENGINE_DOWN = /EngineCore encountered an issue|EngineDeadError|engine (core )?(is )?dead|background loop has (errored|stopped)/i;

/** A replica's own failure, as data (the breaker package wraps it as its `UpstreamFault`). */
export interface ReplicaFailure {
  kind: 'status' | 'malformed';
  message: string;
  status?: number;
}

export type UpstreamVerdict =
  | { owner: 'model'; failure: ModelOutputFailure }
  | { owner: 'request'; failure: RequestFailure }
  | { owner: 'replica'; replica: ReplicaFailure }
  | { owner: 'caller'; error: TeraError };

/** The vLLM error object in a body, when it is one (nested or flat). */
export function upstreamErrorMessage(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const b = body as { error?: unknown; object?: unknown; message?: unknown };
  if (b.error === undefined && b.object !== 'error') return undefined;
  return readUpstreamError(body).message;
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const excerpt = (text: string) => text.slice(0, 300);

/** An error answer (any status, a 200 whose body is an error object included), or an error event in a stream (`status` 0). */
export function classifyUpstreamError(status: number, text: string): UpstreamVerdict {
  const body = parse(text);
  const message = upstreamErrorMessage(body);
  if (message !== undefined && HARMONY_ERROR.test(message))
    return { owner: 'model', failure: new ModelOutputFailure('harmony_error', excerpt(message)) };
  if (status >= 400 && status < 500) return { owner: 'caller', error: toPublicUpstreamError(status, body ?? { message: excerpt(text) }) };
  if ((status === 500 || status === 0) && message !== undefined && !ENGINE_DOWN.test(message))
    return { owner: 'request', failure: new RequestFailure(`replica answered ${status || 'an error event'}: ${excerpt(message)}`) };
  if (status === 200 || status === 0)
    return { owner: 'replica', replica: { kind: 'malformed', message: `replica answered an error object: ${excerpt(message ?? text)}` } };
  return { owner: 'replica', replica: { kind: 'status', message: `replica answered ${status}: ${excerpt(text)}`, status } };
}

/** What the caller reads when the model's output failed after text went out (fixed text, never the replica's). */
export const modelOutputError = (failure: ModelOutputFailure): TeraError =>
  new TeraError(500, 'server_error', `The model produced ${ModelOutputFailure.describe(failure.kind)}. Retry the request.`, {
    code: failure.kind,
  });

/** Why a stream stopped before its end. */
export type StreamFailure =
  /** The upstream sent an error event. */
  | { kind: 'upstream'; body: unknown }
  /** Data that is not a chunk, or an event over the size bound. */
  | { kind: 'malformed'; reason: string }
  /** The stream ended before `[DONE]`, broke off or stalled (`cause`: reset, timeout). */
  | { kind: 'broken'; cause: string; reason: string }
  /** An output check failed (an empty completion, structured output that breaks its format). */
  | { kind: 'model'; failure: ModelOutputFailure }
  /** A transform threw (a TeraError by design, e.g. strict tool-call checks, or a bug), or the output format failed. */
  | { kind: 'transform'; error: unknown };

const streamBroke = (cause: string) =>
  new TeraError(500, 'server_error', `The model server stream broke off (${cause}). Retry with backoff.`, {
    code: 'upstream_stream_error',
  });

/**
 * The error a caller reads when its stream failed after the first byte: one mapping for every
 * stream the gateway serves (the relay, `transformSSE`, pass-through), with fixed text: what the
 * upstream said goes to spans, never to the caller.
 */
export function streamFailureError(failure: StreamFailure): TeraError {
  switch (failure.kind) {
    case 'upstream': {
      const verdict = classifyUpstreamError(0, JSON.stringify(failure.body));
      if (verdict.owner === 'model') return modelOutputError(verdict.failure);
      if (verdict.owner === 'caller') return verdict.error;
      if (verdict.owner === 'request')
        return new TeraError(500, 'server_error', 'The model server failed while streaming. Retry with backoff.', {
          code: 'upstream_stream_error',
        });
      return streamBroke(verdict.replica.kind);
    }
    case 'malformed':
      return streamBroke('malformed');
    case 'broken':
      return streamBroke(failure.cause);
    case 'model':
      return modelOutputError(failure.failure);
    case 'transform':
      return failure.error instanceof TeraError
        ? failure.error
        : new TeraError(500, 'server_error', 'The gateway failed to process the model output.', { code: 'transform_error' });
  }
}
