import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ReplicaBreaker, UpstreamFault, type BreakerOptions, type BreakerState } from '@tera-gw/circuit-breaker';
import {
  SSE_DONE,
  TeraError,
  applyChunkTransforms,
  applyCompletionTransforms,
  applyEndTransforms,
  applyRequestTransforms,
  context,
  createUpstreamSSEDecoder,
  encodeChunk,
  encodeErrorEvent,
  sendError,
  sendJSON,
  serverError,
  serviceUnavailable,
  startEventStream,
  toPublicUpstreamError,
  type ChatCompletion,
  type ChatCompletionChunk,
  type Middleware,
  type RequestContext,
  type AttemptRecord,
  type UpstreamOutcome,
  recordEvent,
} from '@tera-gw/core';
import { createRouter, leastRequest, type RouteRequest, type Router } from '@tera-gw/router';
import { ClientGone, readResponse, sendAttempt, type Timeouts } from './attempt.js';
import { HealthMonitor, type HealthOptions } from './health.js';
import { Replica, type ReplicaStatus } from './replica.js';

export interface VllmOptions {
  /** Base URLs of the vLLM servers, e.g. `http://10.0.0.5:8000` (a trailing `/v1` is accepted). */
  replicas: readonly string[];
  /** Sent as `Authorization: Bearer` to the replicas when vLLM runs with `--api-key`. The caller's key is never forwarded. */
  apiKey?: string;
  timeouts?: Partial<Timeouts>;
  /** Attempts per request across different replicas. @defaultValue 3 */
  maxAttempts?: number;
  /** Active health checks and warm-up; `false` treats every replica as ready at once. */
  health?: Partial<HealthOptions> | false;
  breaker?: BreakerOptions;
  /**
   * `cache-aware` keeps each conversation on the replica that holds its prefix (prefix, load and
   * KV-cache scores; `prompt_cache_key` by rendezvous hashing); `least-request` balances in-flight counts.
   * @defaultValue `cache-aware` with more than one replica
   */
  routing?: 'cache-aware' | 'least-request';
  /** A router of your own (overrides `routing`). */
  router?: Router;
  /** `Retry-After` seconds when no replica is available. @defaultValue 2 */
  retryAfterSeconds?: number;
  /**
   * Caller headers passed to the replicas, by lower-case name. Nothing else is forwarded
   * (never `Authorization`, `OpenAI-Organization`, `OpenAI-Project`, cookies).
   * @defaultValue `['traceparent', 'tracestate']`
   */
  forwardHeaders?: readonly string[];
}

export interface AdapterEvents {
  attempt: [ctx: RequestContext, replica: string, attempt: number];
  retry: [ctx: RequestContext, replica: string, fault: UpstreamFault];
  /** The stream failed after bytes had gone to the client. */
  midStreamFailure: [ctx: RequestContext, replica: string, reason: string];
  clientAbort: [ctx: RequestContext];
  breaker: [replica: string, state: BreakerState];
  replicaState: [replica: string, state: ReplicaStatus['state']];
}

export interface VllmAdapter extends Middleware {
  /** Resolves once at least one replica is warm and ready (or rejects after `timeoutMs`). */
  readonly ready: (timeoutMs?: number) => Promise<void>;
  readonly replicas: () => ReplicaStatus[];
  readonly events: EventEmitter<AdapterEvents>;
  /** Stops health checks and closes upstream connections. */
  readonly close: () => void;
  /**
   * A replica for a raw pass-through request (`/tokenize`...): ready, breaker not open, fewest in
   * flight. `release` ends its in-flight count; `release(fault)` also counts a replica fault
   * (connect error, reset, 5xx) against its breaker. Undefined when none is available.
   */
  readonly pickReplica: () => { readonly base: string; readonly release: (fault?: string) => void } | undefined;
}

const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 5000, firstByteMs: 60_000, idleMs: 30_000, totalMs: 600_000 };

/** An attempt failed before any byte reached the client: try another replica. */
class Retryable extends Error {
  constructor(readonly fault: UpstreamFault) {
    super(fault.message);
  }
}

export function vllm(options: VllmOptions): VllmAdapter {
  if (!options.replicas?.length) throw new Error('vllm(): `replicas` needs at least one URL');
  const timeouts: Timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  const maxAttempts = options.maxAttempts ?? 3;
  const router =
    options.router ?? createRouter({ strategy: options.routing ?? (options.replicas.length > 1 ? 'cache-aware' : 'least-request') });
  const retryAfter = options.retryAfterSeconds ?? 2;
  const NEVER_FORWARDED = new Set([
    'authorization',
    'openai-organization',
    'openai-project',
    'cookie',
    'host',
    'content-length',
    'x-request-id',
  ]);
  const forwardHeaders = (options.forwardHeaders ?? ['traceparent', 'tracestate'])
    .map((h) => h.toLowerCase())
    .filter((h) => !NEVER_FORWARDED.has(h));
  const events = new EventEmitter<AdapterEvents>();
  const replicas = options.replicas.map((url) => new Replica(url, options.breaker));
  for (const r of replicas) r.breaker.on('state', (_replica, state) => events.emit('breaker', r.id, state));
  const monitor = new HealthMonitor(replicas, options.health === false ? false : (options.health ?? {}), options.apiKey, (r) =>
    events.emit('replicaState', r.id, r.state),
  );
  monitor.start();
  const baseHeaders: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  if (options.apiKey) baseHeaders.authorization = `Bearer ${options.apiKey}`;

  function candidates(tried: ReadonlySet<Replica>): Replica[] {
    const out: Replica[] = [];
    for (const r of replicas) if (!tried.has(r) && r.available) out.push(r);
    return out;
  }

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ctx = context(req, res);
    if (!ctx.body) throw new Error('vllm() needs validate() to run before it');
    const body = applyRequestTransforms(ctx.body, ctx);
    const streaming = body.stream === true;
    const callerWantsUsage = body.stream_options?.include_usage === true;
    // Usage is always asked for upstream so it is known for limits and billing; the caller sees the usage chunk only if it asked.
    const upstreamBody = streaming ? { ...body, stream_options: { ...body.stream_options, include_usage: true } } : body;
    const payload = Buffer.from(JSON.stringify(upstreamBody));
    const headers: Record<string, string> = { ...baseHeaders, 'x-request-id': ctx.id };
    for (const name of forwardHeaders) {
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    const deadline = performance.now() + timeouts.totalMs;
    const tried = new Set<Replica>();
    const route: RouteRequest = { promptCacheKey: ctx.local?.promptCacheKey, prompt: body };
    const outcome: UpstreamOutcome = (ctx.upstream = { attempts: 0 });
    let lastFault: UpstreamFault | undefined;
    let staleRetries = 0;

    while (outcome.attempts < maxAttempts) {
      if (ctx.signal.aborted) return;
      const replica = router.pick(route, candidates(tried));
      if (!replica) break;
      router.record?.(route, replica);
      tried.add(replica);
      outcome.attempts++;
      Object.assign(outcome, { replica: replica.id });
      events.emit('attempt', ctx, replica.id, outcome.attempts);
      const record: AttemptRecord = { replica: replica.id, start: performance.now(), outcome: 'ok' };
      (outcome.attemptLog ??= []).push(record);
      const breakerBefore = replica.breaker.state;
      replica.inFlight++;
      try {
        const { response, request } = await replica.breaker.run(async () => {
          const attempt = await sendAttempt(replica, payload, headers, timeouts, ctx.signal);
          const status = attempt.response.statusCode ?? 0;
          if (status >= 500) {
            const text = await readResponse(attempt.response, timeouts.idleMs, deadline, ctx.signal).catch(() => Buffer.alloc(0));
            throw new UpstreamFault('status', `replica answered ${status}: ${text.toString('utf8').slice(0, 200)}`, status);
          }
          return attempt;
        });
        const status = response.statusCode ?? 0;
        record.status = status;
        if (status >= 400) {
          const text = await readResponse(response, timeouts.idleMs, deadline, ctx.signal);
          let parsed: unknown;
          try {
            parsed = JSON.parse(text.toString('utf8'));
          } catch {
            parsed = { message: text.toString('utf8').slice(0, 500) };
          }
          return sendError(res, toPublicUpstreamError(status, parsed));
        }
        const onAbort = () => request.destroy();
        ctx.signal.addEventListener('abort', onAbort, { once: true });
        try {
          if (streaming) await relayStream(response, res, ctx, replica, callerWantsUsage, deadline);
          else await relayCompletion(response, res, ctx, deadline);
        } finally {
          ctx.signal.removeEventListener('abort', onAbort);
        }
        return;
      } catch (err) {
        record.end = performance.now();
        if (err instanceof ClientGone || ctx.signal.aborted) {
          record.outcome = 'aborted';
          events.emit('clientAbort', ctx);
          return;
        }
        const fault = err instanceof Retryable ? err.fault : err instanceof UpstreamFault ? err : undefined;
        if (err instanceof Retryable) replica.breaker.recordFailure(err.fault);
        if (fault) {
          if (fault.staleSocket && staleRetries++ < 2) {
            // The server closed an idle keep-alive socket just as it was reused: the request never ran. Same replica, no attempt spent.
            outcome.attemptLog.pop();
            tried.delete(replica);
            outcome.attempts--;
            continue;
          }
          lastFault = fault;
          record.outcome = 'retried';
          record.error = fault.message;
          if (fault.status !== undefined) record.status = fault.status;
          recordEvent(ctx, 'tera.retry', { 'tera.replica': replica.id, 'error.type': fault.kind, 'tera.attempt': outcome.attempts });
          if (replica.breaker.state !== breakerBefore)
            recordEvent(ctx, 'tera.breaker.state_change', { 'tera.replica': replica.id, 'tera.breaker.state': replica.breaker.state });
          events.emit('retry', ctx, replica.id, fault);
          continue;
        }
        if (ReplicaBreaker.isRejection(err)) {
          // The breaker opened (or its half-open probe slot was taken) since the pick: not an attempt.
          outcome.attemptLog.pop();
          outcome.attempts--;
          continue;
        }
        record.outcome = 'failed';
        record.error = err instanceof Error ? err.message : String(err);
        throw err;
      } finally {
        record.end ??= performance.now();
        replica.inFlight--;
      }
    }
    if (lastFault) {
      throw serverError(
        `The model server failed after ${outcome.attempts} attempt${outcome.attempts === 1 ? '' : 's'}: ${lastFault.message}.`,
        'upstream_error',
        lastFault,
      );
    }
    throw serviceUnavailable('No healthy openai/gpt-oss-20b replica is available right now; retry shortly.', retryAfter);
  }

  async function relayCompletion(response: IncomingMessage, res: ServerResponse, ctx: RequestContext, deadline: number): Promise<void> {
    let completion: ChatCompletion;
    try {
      const text = await readResponse(response, timeouts.idleMs, deadline, ctx.signal);
      completion = JSON.parse(text.toString('utf8')) as ChatCompletion;
      if (!completion || !Array.isArray(completion.choices))
        throw new UpstreamFault('malformed', 'the replica answered a body that is not a chat completion');
    } catch (err) {
      if (err instanceof ClientGone) throw err;
      throw new Retryable(
        err instanceof UpstreamFault ? err : new UpstreamFault('malformed', 'the replica answered a body that is not JSON'),
      );
    }
    if (completion.usage) ctx.usage = completion.usage;
    let out: ChatCompletion;
    try {
      out = applyCompletionTransforms(completion, ctx);
    } catch (err) {
      throw err instanceof TeraError
        ? err
        : new TeraError(500, 'server_error', 'The gateway failed to process the model output.', { code: 'transform_error', cause: err });
    }
    ctx.upstream!.responseId = out.id;
    ctx.upstream!.finishReason = out.choices[0]?.finish_reason ?? undefined;
    const answer: unknown = ctx.output ? await ctx.output.completion(out, ctx) : out;
    ctx.upstream!.firstByteMs = performance.now() - ctx.startTime;
    sendJSON(res, 200, answer);
  }

  function relayStream(
    response: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    replica: Replica,
    callerWantsUsage: boolean,
    deadline: number,
  ): Promise<void> {
    const transforms = ctx.responseTransforms;
    const output = ctx.output;
    const rawPassThrough = !output && !transforms.some((t) => t.chunk !== undefined || t.end !== undefined);
    const encode = output ? (c: ChatCompletionChunk) => output.chunk(c, ctx) : encodeChunk;
    const outcome = ctx.upstream!;
    return new Promise<void>((resolve, reject) => {
      let started = false;
      let settled = false;
      // The upstream said [DONE]: what it does with its socket afterwards no longer matters.
      let upstreamDone = false;
      let pending = '';
      let idle: NodeJS.Timeout | undefined;
      const total = setTimeout(
        () => fail(new UpstreamFault('timeout', 'the stream did not finish in time')),
        Math.max(0, deadline - performance.now()),
      );

      const emit = (chunk: ChatCompletionChunk, data: string | undefined) => {
        if (chunk.usage) ctx.usage = chunk.usage;
        const choice = chunk.choices[0];
        if (choice?.finish_reason) outcome.finishReason = choice.finish_reason;
        if (chunk.choices.length === 0 && chunk.usage && !callerWantsUsage) return;
        if (rawPassThrough && data !== undefined) pending += `data: ${data}\n\n`;
        else for (const c of applyChunkTransforms(chunk, transforms, ctx)) pending += encode(c);
        // The first event goes out at once (time to first token); later ones are written once per upstream read.
        if (!started) flush();
      };
      const flush = () => {
        if (!pending) return;
        if (!started) {
          started = true;
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
      /** The one teardown: true the first time (the caller then resolves or rejects), false after. */
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(idle);
        clearTimeout(total);
        return true;
      };
      const finish = () => {
        if (settle()) resolve();
      };
      /** Before the first byte: retry elsewhere. After it: one error event, then the stream ends. */
      const fail = (fault: UpstreamFault, publicError?: TeraError, countsAgainstReplica = true) => {
        if (settled) return;
        if (!started && !pending && (countsAgainstReplica || publicError)) {
          // Nothing sent yet: a replica fault is retried elsewhere; anything else is an ordinary error response.
          settle();
          response.destroy();
          return reject(countsAgainstReplica || !publicError ? new Retryable(fault) : publicError);
        }
        flush();
        settle();
        response.destroy();
        replica.breaker.recordFailure(fault);
        const error =
          publicError ??
          new TeraError(500, 'server_error', `The model server stream failed: ${fault.message}.`, { code: 'upstream_stream_error' });
        outcome.error = { type: error.type, message: error.message };
        events.emit('midStreamFailure', ctx, replica.id, fault.message);
        recordEvent(ctx, 'tera.stream.failure', { 'tera.replica': replica.id, 'error.type': fault.kind });
        res.end(output ? output.error(error.toJSON(), ctx) : encodeErrorEvent(error.toJSON()));
        resolve();
      };

      // A transform that throws (a TeraError by design, e.g. invalid tool arguments in strict mode, or a bug) ends the stream cleanly.
      const transformFailed = (err: unknown) =>
        fail(
          new UpstreamFault('malformed', 'a response transform refused the stream'),
          err instanceof TeraError
            ? err
            : new TeraError(500, 'server_error', 'The gateway failed to process the model output.', { code: 'transform_error' }),
          false,
        );
      const decoder = createUpstreamSSEDecoder({
        onChunk: (chunk, data) => {
          if (outcome.responseId === undefined) outcome.responseId = chunk.id;
          try {
            emit(chunk, data);
          } catch (err) {
            transformFailed(err);
          }
        },
        onDone: () => {
          upstreamDone = true;
          let tail: string | Promise<string>;
          try {
            for (const c of applyEndTransforms(transforms, ctx)) pending += encode(c);
            tail = output ? output.end(ctx) : SSE_DONE;
          } catch (err) {
            return transformFailed(err);
          }
          const close = (text: string) => {
            pending += text;
            flush();
            res.end();
            finish();
          };
          if (typeof tail === 'string') return close(tail);
          // The output format stores something first (a stored response): the stream waits, the upstream is done.
          clearTimeout(idle);
          tail.then(close, transformFailed);
        },
        onUpstreamError: (body) => fail(new UpstreamFault('status', 'the replica sent an error event'), toPublicUpstreamError(500, body)),
        onMalformed: (reason) => fail(new UpstreamFault('malformed', reason)),
      });
      const armIdle = () => {
        clearTimeout(idle);
        idle = setTimeout(() => fail(new UpstreamFault('timeout', `no data for ${timeouts.idleMs} ms`)), timeouts.idleMs);
      };
      armIdle();
      response.on('data', (bytes: Buffer) => {
        if (settled) return;
        armIdle();
        decoder.feed(bytes);
        flush();
      });
      response.once('end', () => {
        if (settled || upstreamDone) return;
        decoder.end();
        fail(new UpstreamFault('reset', 'the replica ended the stream before [DONE]'));
      });
      response.once('error', (err) => {
        if (ctx.signal.aborted) {
          settle();
          return reject(new ClientGone());
        }
        if (!upstreamDone) fail(new UpstreamFault('reset', `the stream broke off: ${err.message}`));
      });
      response.once('aborted', () => {
        if (!upstreamDone) fail(new UpstreamFault('reset', 'the stream broke off'));
      });
      ctx.signal.addEventListener(
        'abort',
        () => {
          if (settle()) reject(new ClientGone());
        },
        { once: true },
      );
    });
  }

  const handler: Middleware = function vllmUpstream(req, res, next) {
    serve(req, res).catch((err: unknown) => {
      if (err instanceof ClientGone) return;
      next(err);
    });
  };

  return Object.assign(handler, {
    events,
    ready: (timeoutMs = 30_000) => monitor.ready(timeoutMs),
    replicas: () => replicas.map((r) => r.status()),
    pickReplica: () => {
      const replica = leastRequest(candidates(new Set()));
      if (!replica) return undefined;
      replica.inFlight++;
      let released = false;
      return {
        base: replica.id,
        release: (fault?: string) => {
          if (released) return;
          released = true;
          replica.inFlight--;
          if (fault) replica.breaker.recordFailure(new UpstreamFault('reset', fault));
        },
      };
    },
    close: () => {
      monitor.stop();
      for (const r of replicas) r.close();
    },
  });
}
