import { UpstreamFault } from '@tera-gw/circuit-breaker';
import { readUpstreamError, toPublicUpstreamError, type TeraError } from '@tera-gw/core';

/**
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

export type UpstreamVerdict =
  | { owner: 'model'; failure: ModelOutputFailure }
  | { owner: 'request'; failure: RequestFailure }
  | { owner: 'replica'; fault: UpstreamFault }
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
    return { owner: 'replica', fault: new UpstreamFault('malformed', `replica answered an error object: ${excerpt(message ?? text)}`) };
  return { owner: 'replica', fault: new UpstreamFault('status', `replica answered ${status}: ${excerpt(text)}`, status) };
}
