import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  MAX_OUTPUT_TOKENS,
  TeraError,
  context,
  createChunkPipeline,
  errorEventText,
  invalidRequest,
  modelNotFound,
  permissionError,
  readJSONBody,
  sendError,
  serverError,
  serviceUnavailable,
  startEventStream,
  UPSTREAM_FAILED_MESSAGE,
  streamFailureError,
  validTraceparent,
  type Middleware,
  type RequestContext,
  type Usage,
} from '@tera-gw/core';
import { ClientGone, readResponse, UpstreamFault, type Attempt, type PickedReplica, type VllmAdapter } from '@tera-gw/vllm';

export interface PassthroughOptions {
  /** vLLM paths offered as they are, e.g. `['/tokenize', '/detokenize', '/v1/completions']`. */
  paths: readonly string[];
  upstream: VllmAdapter;
  model: string;
  /** Other names of the model (`models.aliases`): accepted in `model`, sent as the model. */
  aliases?: Readonly<Record<string, string>>;
  maxBodyBytes?: number | undefined;
  retryAfterSeconds?: number | undefined;
  /** Pass a caller's valid W3C `traceparent` when telemetry records no span of its own. @defaultValue true */
  forwardTraceparent?: boolean;
  /** Attempts on different replicas when one cannot be reached. @defaultValue 3 */
  maxAttempts?: number;
}

export interface Passthrough {
  /** The path under the gateway's mount for each offered vLLM path: `/tokenize` -> `/tokenize`, `/v1/completions` -> `/completions`. */
  readonly served: ReadonlyMap<string, string>;
  /**
   * Reads the request as the gateway reads chat: JSON only (415 otherwise), uncompressed, within
   * the body's size and depth limits; checks the model and the key's scope; caps generation like
   * chat. Then the gateway's guards run (limiter, budget, admission) on what it left on the context.
   */
  readonly read: Middleware;
  /** Sends the request on the adapter's own connections and relays the answer, reading its usage. */
  readonly proxy: Middleware;
}

/** Endpoints that generate: capped like chat, billed from their usage, their caches salted per tenant. */
const GENERATING = new Set(['/v1/completions', '/v1/chat/completions']);
/** vLLM's `max_tokens` when a completions request names none; chat is given the gateway's output cap. */
const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

interface RawRequest {
  upstreamPath: string;
  body: Record<string, unknown>;
  generating: boolean;
  stream: boolean;
  /** The caller asked for usage in the stream (`stream_options.include_usage`). */
  callerUsage: boolean;
}

const requests = new WeakMap<RequestContext, RawRequest>();

const unsupportedMedia = (message: string, code: string) => new TeraError(415, 'invalid_request_error', message, { code });

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** One prompt: a string, or token ids. A list of prompts would generate once each. */
function singlePrompt(prompt: unknown): boolean {
  if (prompt === undefined || typeof prompt === 'string') return true;
  if (!Array.isArray(prompt)) return true;
  if (prompt.every((p) => typeof p === 'number')) return true;
  return prompt.length === 1;
}

/** Caps generation as chat does (one sequence, at most the model's output cap) and fills in the output the guards hold for. */
function capGeneration(body: Record<string, unknown>, upstreamPath: string): number {
  for (const field of ['n', 'best_of'] as const) {
    const value = body[field];
    if (value !== undefined && value !== null && value !== 1)
      throw invalidRequest(
        `'${field}' other than 1 is not offered through this gateway: send one request per sequence.`,
        field,
        'invalid_value',
      );
  }
  if (!singlePrompt(body.prompt))
    throw invalidRequest('One prompt per request: a list of prompts is not offered through this gateway.', 'prompt', 'invalid_value');
  let output: number | undefined;
  for (const field of ['max_tokens', 'max_completion_tokens'] as const) {
    const value = body[field];
    if (value === undefined || value === null) continue;
    if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > MAX_OUTPUT_TOKENS)
      throw invalidRequest(`Invalid '${field}': must be an integer from 1 to ${MAX_OUTPUT_TOKENS}.`, field, 'invalid_value');
    output = Math.max(output ?? 0, value as number);
  }
  if (output === undefined) {
    output = upstreamPath === '/v1/completions' ? COMPLETIONS_DEFAULT_MAX_TOKENS : MAX_OUTPUT_TOKENS;
    body.max_tokens = output;
  }
  return output;
}

function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
}

/**
 * vLLM endpoints the gateway does not translate, offered raw when an operator opts in, behind
 * the same guards as chat. Requests and answers go through the adapter's own connections, not a
 * generic proxy: the body is read once under the gateway's limits and sent with a fixed set of
 * headers, so nothing the caller sent (its key, cookies, `Expect`, forwarded-for headers, an
 * encoding) reaches a replica unchecked.
 */
export function passthrough(options: PassthroughOptions): Passthrough {
  const served = new Map<string, string>();
  for (const path of options.paths) {
    if (!/^\/[A-Za-z0-9/_-]+$/.test(path))
      throw new TypeError(`createGateway(): passthrough path '${path}' must be a plain path such as '/tokenize'`);
    served.set(path.startsWith('/v1/') ? path.slice(3) : path, path);
  }
  const retryAfter = options.retryAfterSeconds ?? 2;
  const maxAttempts = options.maxAttempts ?? 3;
  const forwardTraceparent = options.forwardTraceparent ?? true;
  const upstream = options.upstream;

  const read: Middleware = function passthroughRead(req, res, next) {
    const ctx = context(req, res);
    const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (encoding !== 'identity')
      return next(unsupportedMedia(`Content-Encoding '${encoding}' is not accepted: send the body uncompressed.`, 'unsupported_encoding'));
    if (mediaType(req) !== 'application/json')
      return next(
        unsupportedMedia(
          `The body must be JSON with 'Content-Type: application/json' (got '${req.headers['content-type'] ?? 'none'}').`,
          'unsupported_media_type',
        ),
      );
    const upstreamPath = served.get(pathOf(req))!;
    readJSONBody(req, options.maxBodyBytes)
      .then(({ value, bytes }) => {
        if (!isObject(value)) throw invalidRequest('The request body must be a JSON object.', null, 'invalid_json');
        const asked = value.model;
        if (asked !== undefined && asked !== options.model) {
          const name = typeof asked === 'string' ? asked : JSON.stringify(asked);
          ctx.requestedModel = name;
          if (typeof asked !== 'string' || options.aliases?.[asked] !== options.model) throw modelNotFound(name);
          value.model = options.model;
        }
        const scoped = ctx.key?.models;
        if (scoped && scoped !== '*' && !scoped.includes(options.model) && !(ctx.requestedModel && scoped.includes(ctx.requestedModel)))
          throw permissionError(`This API key is not allowed to use the model '${ctx.requestedModel ?? options.model}'.`);
        const generating = GENERATING.has(upstreamPath);
        const stream = value.stream === true;
        const streamOptions = isObject(value.stream_options) ? value.stream_options : {};
        const raw: RawRequest = { upstreamPath, body: value, generating, stream, callerUsage: streamOptions.include_usage === true };
        ctx.promptTokenEstimate = bytes;
        if (generating) {
          const output = capGeneration(value, upstreamPath);
          // Usage on every chunk: the answer is billed even when the caller leaves mid-stream.
          if (stream) value.stream_options = { ...streamOptions, include_usage: true, continuous_usage_stats: true };
          const salt = upstream.cacheSalt(ctx, typeof value.cache_salt === 'string' ? value.cache_salt : undefined);
          if (salt === undefined) delete value.cache_salt;
          else value.cache_salt = salt;
          // What the limiter, budget and admission read of a request: its model, output cap and mode.
          ctx.body = { model: options.model, messages: [], max_tokens: output, stream };
        }
        requests.set(ctx, raw);
        next();
      })
      .catch(next);
  };

  const proxy: Middleware = function passthroughProxy(req, res, next) {
    const ctx = context(req, res);
    const raw = requests.get(ctx);
    if (!raw) return next(new Error('passthrough: the read step did not run'));
    forward(req, res, ctx, raw).catch((err: unknown) => {
      if (err instanceof ClientGone) return;
      next(err);
    });
  };

  function headersFor(req: IncomingMessage, ctx: RequestContext): Record<string, string> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'x-request-id': ctx.id,
    };
    if (ctx.traceHeaders) Object.assign(headers, ctx.traceHeaders);
    else if (forwardTraceparent) {
      const parent = validTraceparent(req.headers.traceparent);
      if (parent) headers.traceparent = parent;
    }
    return headers;
  }

  /** Attempts until a replica answers: only a connection that could not be made or broke before the answer moves on (and counts against its breaker). */
  async function forward(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, raw: RawRequest): Promise<void> {
    const payload = Buffer.from(JSON.stringify(raw.body));
    const headers = headersFor(req, ctx);
    const outcome = (ctx.upstream = { attempts: 0 } as NonNullable<RequestContext['upstream']>);
    const tried = new Set<string>();
    let staleRetries = 0;
    let lastFault: UpstreamFault | undefined;
    while (outcome.attempts < maxAttempts) {
      if (ctx.signal.aborted) return;
      const picked = upstream.pickReplica(tried);
      if (!picked) break;
      // Admission's hold on the pool becomes this in-flight count.
      ctx.pool?.reservation?.settle();
      tried.add(picked.base);
      outcome.attempts++;
      outcome.replica = picked.base;
      let attempt: Attempt;
      try {
        attempt = await picked.send(raw.upstreamPath, payload, headers, ctx.signal);
      } catch (err) {
        if (err instanceof UpstreamFault && err.staleSocket && staleRetries++ < 2) {
          // The replica closed an idle keep-alive socket as it was reused: the request never ran.
          picked.release();
          tried.delete(picked.base);
          outcome.attempts--;
          continue;
        }
        picked.release(err instanceof UpstreamFault ? err : undefined);
        if (!(err instanceof UpstreamFault)) throw err;
        lastFault = err;
        continue;
      }
      ctx.cleanups.push(() => picked.release());
      return answer(res, ctx, raw, attempt, picked);
    }
    outcome.error = { type: 'service_unavailable', message: lastFault?.message ?? 'no replica available' };
    sendError(
      res,
      lastFault
        ? serviceUnavailable('The model server could not be reached; retry shortly.', retryAfter, 'upstream_unreachable')
        : serviceUnavailable('No healthy openai/gpt-oss-20b replica is available right now; retry shortly.', retryAfter),
    );
  }

  async function answer(res: ServerResponse, ctx: RequestContext, raw: RawRequest, attempt: Attempt, picked: PickedReplica): Promise<void> {
    const { response, request } = attempt;
    const outcome = ctx.upstream!;
    const status = response.statusCode ?? 0;
    const onAbort = () => request.destroy();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (status >= 500) {
        // A replica's 5xx body may hold a traceback, an address or a key: its start goes to the span, the caller gets fixed text.
        const text = await readResponse(response, upstream.timeouts.idleMs, deadline(), ctx.signal).catch(() => Buffer.alloc(0));
        outcome.error = { type: 'server_error', message: `replica answered ${status}: ${text.toString('utf8', 0, 500)}` };
        return sendError(res, serverError(UPSTREAM_FAILED_MESSAGE, 'upstream_error'));
      }
      const type = response.headers['content-type'] ?? 'application/json';
      if (raw.generating && raw.stream && status === 200 && type.startsWith('text/event-stream'))
        return await relayEvents(res, ctx, raw, response, picked);
      const body = await readResponse(response, upstream.timeouts.idleMs, deadline(), ctx.signal);
      if (raw.generating && status === 200) {
        const usage = usageOf(body);
        if (usage) ctx.usage = usage;
      }
      outcome.firstByteMs = performance.now() - ctx.startTime;
      res.statusCode = status;
      res.setHeader('Content-Type', type);
      res.setHeader('Content-Length', body.length);
      res.end(body);
    } catch (err) {
      if (err instanceof UpstreamFault) {
        outcome.error = { type: 'server_error', message: err.message };
        if (!res.headersSent) return sendError(res, serverError(UPSTREAM_FAILED_MESSAGE, 'upstream_error'));
        return;
      }
      throw err;
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
    }
  }

  const deadline = () => performance.now() + upstream.timeouts.totalMs;

  /** A generating stream: relayed through core's chunk pipeline (no transforms), its usage read and cut as the caller asked. */
  function relayEvents(
    res: ServerResponse,
    ctx: RequestContext,
    raw: RawRequest,
    response: IncomingMessage,
    picked: PickedReplica,
  ): Promise<void> {
    const outcome = ctx.upstream!;
    return new Promise<void>((resolve) => {
      let pending = '';
      let ended = false;
      const flush = () => {
        if (!pending) return;
        if (!res.headersSent) {
          outcome.firstByteMs = performance.now() - ctx.startTime;
          startEventStream(res);
        }
        const text = pending;
        pending = '';
        if (!res.write(text)) {
          response.pause();
          res.once('drain', () => response.resume());
        }
      };
      const end = () => {
        if (ended) return;
        ended = true;
        flush();
        res.end();
        response.destroy();
        resolve();
      };
      const pipeline = createChunkPipeline({
        ctx,
        transforms: [],
        write: (text) => (pending += text),
        callerUsage: { include: raw.callerUsage, continuous: false },
        onDone: end,
        onFailure: (failure) => {
          const error = streamFailureError(failure);
          outcome.error = { type: error.type, message: failure.kind === 'broken' ? failure.reason : failure.kind };
          // A stream cut short is the replica's connection failing: that one counts against its breaker.
          if (failure.kind === 'broken') picked.release(new UpstreamFault('reset', failure.reason));
          pending += errorEventText(ctx, error);
          end();
        },
      });
      response.setEncoding('utf8');
      response.on('data', (text: string) => {
        pipeline.feed(text);
        flush();
      });
      response.once('end', () => pipeline.end());
      response.once('error', (err) =>
        ctx.signal.aborted ? end() : pipeline.fail({ kind: 'broken', cause: 'reset', reason: `the stream broke off: ${err.message}` }),
      );
      ctx.signal.addEventListener('abort', end, { once: true });
    });
  }

  return { served, read, proxy };
}

function usageOf(body: Buffer): Usage | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { usage?: unknown };
    const usage = parsed.usage as Usage | undefined;
    return usage && typeof usage.prompt_tokens === 'number' && typeof usage.completion_tokens === 'number' ? usage : undefined;
  } catch {
    return undefined;
  }
}
