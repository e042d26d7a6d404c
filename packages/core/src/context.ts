import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorBody } from './errors.js';
import { consoleLogger, guarded, type Logger } from './log.js';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Usage } from './schema.js';
import type { ChatTransform } from './transform.js';
import type { PoolTicket } from './pool.js';

/**
 * How the terminal handler writes the answer, after the response transforms ran. Absent: Chat
 * Completions as they are. The Responses stage sets one that turns chat completions and chunks
 * into Responses objects and events, so every other stage stays a chat stage.
 */
export interface OutputFormat {
  /** Non-streaming: the JSON body for the caller (a promise when something must be stored first). */
  completion(body: ChatCompletion, ctx: RequestContext): unknown;
  /** Streaming: the SSE text for one transformed chunk ('' for nothing). */
  chunk(chunk: ChatCompletionChunk, ctx: RequestContext): string;
  /** The stream finished: the closing SSE text (Chat Completions: `data: [DONE]`). */
  end(ctx: RequestContext): string | Promise<string>;
  /** The stream failed after its first byte: the SSE text that ends it. */
  error(body: ErrorBody, ctx: RequestContext): string;
}

/** What auth puts on the context: never the key itself. */
export interface AuthenticatedKey {
  /** Stable id for logs, spans, usage records and limiter buckets. */
  readonly id: string;
  /** Models this key may use; `'*'` for all. */
  readonly models: readonly string[] | '*';
  /** Limits for the limiter; absent means the limiter's defaults. */
  readonly limits?: { readonly concurrency?: number; readonly tokensPerSecond?: number };
  /** Keys of one team may share prompt caches (`cacheIsolation: 'team'`). */
  readonly team?: string;
  /** Spend budget per UTC calendar period (`@tera-gw/rate-limit`'s `budgets()` enforces it). */
  readonly budget?: { readonly usd?: number; readonly tokens?: number; readonly period: 'day' | 'week' | 'month' | 'total' };
  /** Admission band when the pool is full: higher goes first, below 0 is refused at once (sheddable). Absent means 0. */
  readonly priority?: number;
  /** The key fronts many end users and may name the one a request is for (`X-Tera-Fairness-Id`), so they queue as separate flows. */
  readonly fairnessFromHeader?: boolean;
}

/** One try against one replica, for telemetry's per-attempt spans. Times are `performance.now()` values. */
export interface AttemptRecord {
  replica: string;
  start: number;
  end?: number;
  /** HTTP status the replica answered, when it answered. */
  status?: number;
  outcome: 'ok' | 'retried' | 'failed' | 'aborted';
  error?: string;
}

/** Something that happened to a request, for span events. `time` is a `performance.now()` value. */
export interface RequestEvent {
  name: string;
  time: number;
  attributes?: Record<string, string | number | boolean>;
}

/** What the upstream adapter records about how a request was served, for telemetry and usage. */
export interface UpstreamOutcome {
  replica?: string;
  attempts: number;
  attemptLog?: AttemptRecord[];
  /** The response id the upstream gave. */
  responseId?: string;
  finishReason?: string;
  /** ms since `startTime` when the first byte went to the client. */
  firstByteMs?: number;
  /** Set when the request failed after the first byte, or before the client got any answer. */
  error?: { type: string; message: string };
  /** `'fallback'` when the overflow provider answered instead of the pool. */
  servedBy?: 'pool' | 'fallback';
  /** Times the stream was resumed on another replica after its replica failed mid-stream. */
  resumes?: number;
}

/** A tool call as the tool-call stage assembled it, for telemetry and logs. */
export interface AssembledToolCall {
  index: number;
  id: string;
  name: string;
  arguments: string;
  /** Arguments parse as JSON and, when the request declared the tool's schema, satisfy it. */
  valid: boolean;
  problem?: string;
}

export interface RequestContext {
  readonly id: string;
  /** `performance.now()` at arrival. */
  readonly startTime: number;
  /** Fires once when the client goes away before the response finished. */
  readonly signal: AbortSignal;
  /** The model name the caller asked for when it was an alias: the answer and the usage name it. */
  requestedModel?: string;
  /** The validated body, as it will be sent upstream (defaults applied, local-only fields removed). */
  body?: ChatCompletionRequest;
  /** `prompt_cache_key` and other local-only fields, kept for routing and telemetry. */
  local?: { promptCacheKey?: string; user?: string };
  /** Prompt tokens when validation counted them exactly; else undefined (see `promptTokenEstimate`). */
  promptTokens?: number;
  /** An upper bound on prompt tokens that is free to compute: the body's byte length. */
  promptTokenEstimate?: number;
  /**
   * Checks whose cost grows with the request (schema limits, the exact prompt count), left by
   * validation for the upstream stage to run once the cheap checks (scope, rate limits) passed.
   */
  costlyChecks?: () => Promise<void>;
  key?: AuthenticatedKey;
  /** The active span of the telemetry stage, kept opaque here so core does not depend on OpenTelemetry. */
  span?: unknown;
  usage?: Usage;
  /**
   * Usage still being worked out when the client left (the prompt of a request aborted before
   * the replica reported any): cleanups (limiter reconciliation, the usage record) wait for it.
   */
  usagePending?: Promise<void>;
  /**
   * Tokens the request consumed beyond the usage it is billed (attempts retried after the model's
   * output failed, a stored response read back), for the limiter's reconciliation only.
   */
  consumedTokens?: number;
  /** Why the request ended without its answer reaching the caller in full, e.g. `client_closed_mid_stream`. */
  abortReason?: string;
  upstream?: UpstreamOutcome;
  /** The request's place in the upstream pool (admission's ticket for the upstream). */
  pool?: PoolTicket;
  /** Repairs the response stages made, by kind (e.g. `harmony.tool_name`), for telemetry. */
  repairs?: Record<string, number>;
  /** Rate-limit rejections, retries, aborts, mid-stream failures...: telemetry turns them into span events. */
  events?: RequestEvent[];
  /** Request-side transforms, applied in order to the body before it goes upstream. */
  readonly requestTransforms: ChatTransform[];
  /** Response-side transforms, applied in order to every completion, chunk and stream end. */
  readonly responseTransforms: ChatTransform[];
  /** The `error.type` of the error answer, set by `sendError`, for telemetry (never guessed from the status). */
  errorType?: string;
  /** The `error.code` of the error answer, set by `sendError`, for the access log. */
  errorCode?: string;
  /** What the request is, set by the route that took it (`chat`, `responses`, `passthrough`...): metrics and logs are labelled by it. */
  operation?: string;
  /** Set by a stage that answers in another API's shape (the Responses API); absent for Chat Completions. */
  output?: OutputFormat;
  /** W3C trace context of the gateway's own span (set by telemetry): what the upstream gets instead of the caller's. */
  traceHeaders?: { traceparent: string; tracestate?: string };
  /** The request's logger (a child of the gateway's, carrying the request id); absent outside the gateway. */
  log?: Logger;
  /** Callbacks run once when the response is finished or the client left; leases and spans end here. */
  readonly cleanups: Array<() => void>;
}

const contexts = new WeakMap<IncomingMessage, RequestContext>();
// Request ids reach every caller: random (96 bits from a pooled buffer, one crypto call per 256 ids),
// so they tell neither which process answered nor how much traffic the gateway serves.
const ID_BYTES = 12;
let idPool = Buffer.alloc(0);
let idOffset = 0;

/** A unique request id, `req_` and 24 hex digits. */
export function newRequestId(): string {
  if (idOffset + ID_BYTES > idPool.length) {
    idPool = randomBytes(ID_BYTES * 256);
    idOffset = 0;
  }
  const id = `req_${idPool.toString('hex', idOffset, idOffset + ID_BYTES)}`;
  idOffset += ID_BYTES;
  return id;
}

const fallbackLogger = consoleLogger();

/** Each cleanup runs whatever the others do; one that throws is logged with the request's id, never swallowed. */
function runCleanups(ctx: RequestContext): void {
  const list = ctx.cleanups.splice(0);
  const log = ctx.log ?? fallbackLogger.child({ requestId: ctx.id });
  for (const fn of list) guarded(log, 'a cleanup of the request', fn);
}

/**
 * The request's context, created on first use. It owns the abort signal (fired when the
 * client goes away before the response has finished) and runs `cleanups` exactly once.
 */
export function context(req: IncomingMessage, res?: ServerResponse): RequestContext {
  const existing = contexts.get(req);
  if (existing) return existing;
  const controller = new AbortController();
  const created = createContext(controller.signal);
  contexts.set(req, created);
  const response = res ?? (req as IncomingMessage & { res?: ServerResponse }).res;
  if (response) {
    response.once('close', () => {
      if (response.writableFinished) return runCleanups(created);
      recordEvent(created, 'tera.client_abort');
      controller.abort(new Error('client disconnected'));
      // Stages react to the abort in promise callbacks; let them settle (and any usage still being
      // counted) before leases are released and spans end.
      setImmediate(() => {
        const pending = created.usagePending;
        if (!pending) return runCleanups(created);
        pending.then(
          () => runCleanups(created),
          () => runCleanups(created),
        );
      });
    });
  }
  return created;
}

/** A context outside any HTTP framework, for in-house gateways that run the transforms themselves. */
export function createContext(signal: AbortSignal = new AbortController().signal, id = newRequestId()): RequestContext {
  return {
    id,
    startTime: performance.now(),
    signal,
    requestTransforms: [],
    responseTransforms: [],
    cleanups: [],
  };
}

/** Runs the context's cleanups now (once); for contexts made with `createContext`. */
export function finishContext(ctx: RequestContext): void {
  runCleanups(ctx);
}

/** The id limits, budgets, stored responses and usage records file a request under when no key authenticated it (`auth: false`). */
export const ANONYMOUS_KEY_ID = 'anonymous';

export function keyIdOf(ctx: RequestContext): string {
  return ctx.key?.id ?? ANONYMOUS_KEY_ID;
}

export function recordEvent(ctx: RequestContext, name: string, attributes?: RequestEvent['attributes']): void {
  const event: RequestEvent = { name, time: performance.now() };
  if (attributes) event.attributes = attributes;
  (ctx.events ??= []).push(event);
}
