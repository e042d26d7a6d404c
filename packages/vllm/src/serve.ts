import type { IncomingMessage, ServerResponse } from 'node:http';
import { ReplicaBreaker, UpstreamFault } from '@tera-gw/circuit-breaker';
import {
  ModelOutputFailure,
  RequestFailure,
  TeraError,
  applyRequestTransforms,
  context,
  recordEvent,
  sendError,
  serverError,
  serviceUnavailable,
  validTraceparent,
  validTracestate,
  type AttemptRecord,
  type ChatCompletionRequest,
  type RequestContext,
  type UpstreamOutcome,
} from '@tera-gw/core';
import type { RouteRequest, Router } from '@tera-gw/router';
import { ClientGone, readResponse, sendAttempt, type Attempt } from './attempt.js';
import { classify } from './outcome.js';
import { ContinuationTranslator, TokenLog, continuationPayload, notResumable } from './resume.js';
import { UsageMeter, settleAbortedUsage } from './usage.js';
import {
  StreamRelay,
  endStreamWithError,
  relayCompletion,
  Resume,
  Retryable,
  type CallerUsage,
  type RelayDeps,
  type StreamState,
} from './relay.js';
import type { Replica } from './replica.js';

const isEventStreamResponse = (response: IncomingMessage) => (response.headers['content-type'] ?? '').startsWith('text/event-stream');

export interface ServeDeps extends RelayDeps {
  /** The replicas in the set now (draining ones left out). */
  replicas: () => readonly Replica[];
  /** Passive health: a replica that could not be reached leaves rotation until a health check passes. */
  markDown: (replica: Replica, cause: string) => void;
  router: Router;
  maxAttempts: number;
  /** Headers every upstream request carries (content type, the upstream key). */
  baseHeaders: Readonly<Record<string, string>>;
  /** Caller headers passed on, lower-case. */
  forwardHeaders: readonly string[];
  retryAfter: number;
  /** The request's `cache_salt` (tenant partition), or undefined to send none. */
  cacheSalt: (ctx: RequestContext, callerSalt: string | undefined) => string | undefined;
  /** The overflow provider for requests admission marked `overflow`. */
  fallback?: { replica: Replica; headers: Readonly<Record<string, string>>; model?: string | undefined } | undefined;
  /** An attempt ended: its replica has room again. */
  onRelease: () => void;
  /** Resume a stream whose replica failed after text, on another replica, from its token ids (at most this many times). */
  maxResumes: number;
}

/** What one request sends upstream, built once and sent by every attempt. */
interface UpstreamRequest {
  ctx: RequestContext;
  body: ChatCompletionRequest;
  streaming: boolean;
  caller: CallerUsage;
  payload: Buffer;
  headers: Record<string, string>;
  route: RouteRequest;
  /** Sent to the overflow provider instead of the pool. */
  overflow: boolean;
  deadline: number;
  /** The tenant's `cache_salt`, for a continuation too. */
  salt: string | undefined;
  /** The stream asks for token ids and may be resumed. */
  resumable: boolean;
}

/** Where a request's attempts stand. */
interface Attempts {
  outcome: UpstreamOutcome;
  tried: Set<Replica>;
  stream: StreamState;
  last: UpstreamFault | ModelOutputFailure | RequestFailure | undefined;
  /** A model-output failure is not the replica's: with no other replica ready, the same one tries again. */
  sameReplicaAllowed: boolean;
  staleRetries: number;
  /** The next attempt takes its turn in admission first (a retry after the model's output failed). */
  readmit: boolean;
  /** The failure being resumed: the next attempt continues the stream instead of starting it. */
  resuming: Resume | undefined;
}

/** What a failed attempt means for the request. */
type Decision =
  | { next: 'retry' }
  /** The request never ran (a stale keep-alive socket, a breaker that refused since the pick): no attempt spent; `again` on the same replica. */
  | { next: 'retry-uncounted'; again: boolean }
  | { next: 'gone' }
  /** The replica failed after text: the next attempt continues the stream on another replica. */
  | { next: 'resume' }
  | { next: 'answer'; error: TeraError };

/**
 * The trace context the upstream gets: the gateway's own span when telemetry records one,
 * else the caller's when it is valid W3C (and forwarding it is configured), else none.
 */
function traceHeadersFor(forwardHeaders: readonly string[]) {
  const forwardParent = forwardHeaders.includes('traceparent');
  const forwardState = forwardHeaders.includes('tracestate');
  return (req: IncomingMessage, ctx: RequestContext): Record<string, string> => {
    if (ctx.traceHeaders) return { ...ctx.traceHeaders };
    const parent = forwardParent ? validTraceparent(req.headers.traceparent) : undefined;
    if (!parent) return {};
    const state = forwardState ? validTracestate(req.headers.tracestate) : undefined;
    return state ? { traceparent: parent, tracestate: state } : { traceparent: parent };
  };
}

/**
 * The retry loop, as named steps: build the upstream request, pick a replica, run the attempt,
 * classify its failure, and answer the final error. Replica faults are retried on another replica
 * before the first byte reached the client; the answer is relayed once an attempt succeeds.
 */
export function createServe(deps: ServeDeps): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { replicas, router, maxAttempts, timeouts, events, baseHeaders, forwardHeaders, retryAfter, cacheSalt, fallback } = deps;
  const traceHeaders = traceHeadersFor(forwardHeaders);

  /** Step 1: the body and headers every attempt sends (request transforms applied, usage asked for, the tenant's salt). */
  function buildUpstreamRequest(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    validated: ChatCompletionRequest,
  ): UpstreamRequest {
    const body = applyRequestTransforms(validated, ctx);
    const streaming = body.stream === true;
    const overflow = ctx.pool?.overflow === true && fallback !== undefined;
    if (overflow) {
      res.setHeader('X-Tera-Served-By', 'fallback');
    }
    // Usage is always asked for upstream, on every chunk, so it is known for limits and billing even when the
    // client leaves or the stream breaks; the caller sees what it asked for.
    const upstreamBody: ChatCompletionRequest & { return_token_ids?: boolean } = { ...body };
    if (streaming) upstreamBody.stream_options = { ...body.stream_options, include_usage: true, continuous_usage_stats: true };
    // The ids of the prompt and of every generated token: what resuming the stream elsewhere needs (vLLM 0.10.2+).
    const resumable = streaming && deps.maxResumes > 0 && !overflow && notResumable(body) === undefined;
    if (resumable) upstreamBody.return_token_ids = true;
    if (overflow) {
      // A fallback provider is any OpenAI-compatible API: vLLM's own fields stay home (the salt too, below).
      if (upstreamBody.stream_options) {
        const { continuous_usage_stats: _vllmOnly, ...openai } = upstreamBody.stream_options;
        upstreamBody.stream_options = openai;
      }
      if (fallback.model) upstreamBody.model = fallback.model;
    }
    const salt = overflow ? undefined : cacheSalt(ctx, body.cache_salt);
    if (salt === undefined) delete upstreamBody.cache_salt;
    else upstreamBody.cache_salt = salt;
    const headers: Record<string, string> = { ...(overflow ? fallback.headers : baseHeaders), 'x-request-id': ctx.id };
    for (const name of forwardHeaders) {
      if (name === 'traceparent' || name === 'tracestate') continue;
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    Object.assign(headers, traceHeaders(req, ctx));
    return {
      ctx,
      body,
      streaming,
      caller: { include: body.stream_options?.include_usage === true, continuous: body.stream_options?.continuous_usage_stats === true },
      payload: Buffer.from(JSON.stringify(upstreamBody)),
      headers,
      route: { promptCacheKey: ctx.local?.promptCacheKey, prompt: body, partition: salt },
      overflow,
      deadline: performance.now() + timeouts.totalMs,
      salt,
      resumable,
    };
  }

  /**
   * Step 2: the replica for the next attempt. Available replicas not tried yet, full ones included:
   * for a long conversation, a turn in the FIFO of the replica that caches it costs less than
   * prefilling it elsewhere (measured on bench:routing's agentic workload, within noise of
   * filtering to replicas with room); the router's load terms weigh the rest.
   */
  function pickReplica(request: UpstreamRequest, state: Attempts): Replica | undefined {
    if (request.overflow) {
      const fb = fallback!.replica;
      return fb.available && (!state.tried.has(fb) || state.sameReplicaAllowed) ? fb : undefined;
    }
    const candidates = (tried: ReadonlySet<Replica>) => replicas().filter((r) => !tried.has(r) && r.available);
    let pool = candidates(state.tried);
    if (!pool.length && state.sameReplicaAllowed) pool = candidates(new Set());
    const replica = router.pick(request.route, pool);
    if (replica) router.record?.(request.route, replica);
    return replica;
  }

  /**
   * Step 3: one attempt on one replica: send, read the answer's head, relay it. Throws what failed;
   * returns the replica's answer about the request itself (a 400) for the caller to read.
   */
  async function runAttempt(
    request: UpstreamRequest,
    replica: Replica,
    res: ServerResponse,
    state: Attempts,
    record: AttemptRecord,
  ): Promise<TeraError | undefined> {
    const { ctx, streaming } = request;
    const resuming = state.resuming;
    // A chat attempt starts the generation over: ids an earlier attempt logged before its text are not this one's.
    if (!resuming && request.resumable) state.stream.tokens = new TokenLog();
    const send = resuming
      ? { payload: continuationPayload(request.body, state.stream.tokens!, request.salt), path: '/v1/completions' }
      : { payload: request.payload, path: undefined };
    const { response, request: upstream } = await replica.breaker.run(() => sendChecked(request, replica, send));
    const status = response.statusCode ?? 0;
    record.status = status;
    if (status >= 400 || (streaming && !isEventStreamResponse(response))) {
      // An error answer, or a JSON body where a stream was asked for (a 200 carrying an error object).
      const text = (await readResponse(response, timeouts.idleMs, request.deadline, ctx.signal)).toString('utf8');
      const verdict = classify(status, text);
      if (verdict.owner === 'caller') return verdict.error;
      throw verdict.owner === 'replica' ? new Retryable(verdict.fault) : verdict.failure;
    }
    const onAbort = () => upstream.destroy();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    try {
      const translator = resuming ? continuationTranslator(ctx, state.stream) : undefined;
      if (streaming)
        await new StreamRelay(deps, response, res, ctx, replica, request.caller, request.deadline, state.stream, translator).done;
      else await relayCompletion(deps, response, res, ctx, request.deadline);
      if (resuming) {
        state.resuming = undefined;
        events.emit('resume', ctx, replica.id, 'completed');
      }
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
    }
    return undefined;
  }

  /** Sends the attempt inside the breaker: only a replica fault leaves it as an UpstreamFault, so only those are counted. */
  async function sendChecked(
    request: UpstreamRequest,
    replica: Replica,
    send: { payload: Buffer; path: string | undefined },
  ): Promise<Attempt> {
    const attempt = await sendAttempt(replica, send.payload, request.headers, timeouts, request.ctx.signal, send.path);
    const status = attempt.response.statusCode ?? 0;
    if (status < 500) return attempt;
    const text = await readResponse(attempt.response, timeouts.idleMs, request.deadline, request.ctx.signal).catch(() => Buffer.alloc(0));
    const verdict = classify(status, text.toString('utf8'));
    throw verdict.owner === 'replica' ? verdict.fault : verdict.owner === 'caller' ? verdict.error : verdict.failure;
  }

  /** Step 4: what a failed attempt means: retry (counted or not), the client is gone, or answer now. */
  function classifyFailure(
    err: unknown,
    request: UpstreamRequest,
    replica: Replica,
    state: Attempts,
    record: AttemptRecord,
    breakerBefore: string,
  ): Decision {
    const { ctx } = request;
    const { outcome } = state;
    if (err instanceof ClientGone || ctx.signal.aborted) {
      record.outcome = 'aborted';
      return { next: 'gone' };
    }
    if (err instanceof Resume) return resumeOrEnd(err, request, replica, state, record);
    if (err instanceof ModelOutputFailure || err instanceof RequestFailure) {
      // Not the replica's fault: retried, never counted against its breaker.
      state.last = err;
      record.outcome = 'retried';
      record.error = err.message;
      const kind = err instanceof ModelOutputFailure ? err.kind : 'request_failure';
      if (err instanceof ModelOutputFailure) {
        state.sameReplicaAllowed = true;
        const repairs = (ctx.repairs ??= {});
        repairs[`retry.${kind}`] = (repairs[`retry.${kind}`] ?? 0) + 1;
      }
      recordEvent(ctx, 'tera.retry', { 'tera.replica': replica.id, 'error.type': kind, 'tera.attempt': outcome.attempts });
      events.emit('retry', ctx, replica.id, err);
      // The failed attempt's tokens were processed: they count against the key's rate, though only one attempt is billed.
      if (ctx.usage) {
        ctx.consumedTokens = (ctx.consumedTokens ?? 0) + ctx.usage.total_tokens;
        ctx.usage = undefined;
      }
      state.readmit = true;
      return { next: 'retry' };
    }
    const fault = err instanceof Retryable ? err.fault : err instanceof UpstreamFault ? err : undefined;
    if (err instanceof Retryable) replica.breaker.recordFailure(err.fault);
    if (fault) {
      if (fault.staleSocket && state.staleRetries++ < 2) return { next: 'retry-uncounted', again: true };
      // Refused or reset before any answer: the replica is gone, not slow. Out of rotation now, not after the next health checks.
      if (err === fault && (fault.kind === 'connect' || fault.kind === 'reset')) deps.markDown(replica, fault.message);
      state.last = fault;
      record.outcome = 'retried';
      record.error = fault.message;
      if (fault.status !== undefined) record.status = fault.status;
      recordEvent(ctx, 'tera.retry', { 'tera.replica': replica.id, 'error.type': fault.kind, 'tera.attempt': outcome.attempts });
      if (replica.breaker.state !== breakerBefore)
        recordEvent(ctx, 'tera.breaker.state_change', { 'tera.replica': replica.id, 'tera.breaker.state': replica.breaker.state });
      events.emit('retry', ctx, replica.id, fault);
      return { next: 'retry' };
    }
    // The breaker opened (or its half-open probe slot was taken) since the pick: not an attempt.
    if (ReplicaBreaker.isRejection(err)) return { next: 'retry-uncounted', again: false };
    record.outcome = 'failed';
    record.error = err instanceof Error ? err.message : String(err);
    if (err instanceof TeraError) return { next: 'answer', error: err };
    throw err;
  }

  /**
   * Step 4b: the replica failed after text. Another ready replica continues the stream from its
   * last token (at most `maxResumes` times, never on the replica that failed); without one, the
   * stream ends with the error event as before.
   */
  function resumeOrEnd(err: Resume, request: UpstreamRequest, replica: Replica, state: Attempts, record: AttemptRecord): Decision {
    const { ctx } = request;
    record.outcome = 'retried';
    record.error = err.message;
    const another = replicas().some((r) => r.available && r !== replica);
    const outcome = state.stream.resumes >= deps.maxResumes ? 'limit' : another ? 'resuming' : 'no_replica';
    recordEvent(ctx, 'tera.resume', { 'tera.replica': replica.id, 'tera.resume.outcome': outcome });
    if (outcome !== 'resuming') {
      events.emit('resume', ctx, replica.id, outcome);
      return { next: 'answer', error: err.error };
    }
    // The failed replica is tried already; a continuation never goes back to it.
    state.stream.resumes++;
    state.resuming = err;
    ctx.upstream!.resumes = state.stream.resumes;
    events.emit('resume', ctx, replica.id, 'started');
    return { next: 'resume' };
  }

  /** A continuation's chunks look like the stream's own: its id, its prompt's tokens in the usage. */
  function continuationTranslator(ctx: RequestContext, stream: StreamState): ContinuationTranslator {
    const log = stream.tokens!;
    return new ContinuationTranslator(stream.identity!, log, log.prompt!.length, ctx.usage?.prompt_tokens_details);
  }

  /** Step 5: every attempt failed, or none could be made: the error the caller reads (fixed text; the failure is in the spans). */
  function finalError(state: Attempts): TeraError {
    const { last, outcome } = state;
    const attempts = `${outcome.attempts} attempt${outcome.attempts === 1 ? '' : 's'}`;
    if (last instanceof ModelOutputFailure)
      return serverError(
        `The model produced ${ModelOutputFailure.describe(last.kind)} on ${attempts}. Retry the request; if it persists, report the X-Tera-Request-ID of this response.`,
        last.kind,
        last,
      );
    // Every replica tried could not be reached, and none is left: the pool is down, not failing.
    if (last instanceof UpstreamFault && (last.kind === 'connect' || last.kind === 'reset') && !replicas().some((r) => r.available))
      return serviceUnavailable('No healthy openai/gpt-oss-20b replica is reachable right now; retry shortly.', retryAfter);
    if (last)
      return serverError(
        `The model server failed to answer after ${attempts}. Retry with backoff; if it persists, report the X-Tera-Request-ID of this response.`,
        'upstream_error',
        last,
      );
    return serviceUnavailable('No healthy openai/gpt-oss-20b replica is available right now; retry shortly.', retryAfter);
  }

  /** A retry after the model's output failed waits its turn in admission; false when the request should stop (refused or gone). */
  async function readmitted(request: UpstreamRequest, state: Attempts, answer: (error: TeraError) => void): Promise<boolean> {
    const { ctx } = request;
    const readmit = ctx.pool?.readmit;
    if (!state.readmit || !readmit) return true;
    state.readmit = false;
    try {
      await readmit();
    } catch (refused) {
      answer(refused instanceof TeraError ? refused : serverError('The retry could not be admitted.', 'upstream_error'));
      return false;
    }
    return !ctx.signal.aborted;
  }

  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const ctx = context(req, res);
    if (!ctx.body) throw new Error('vllm() needs validate() to run before it');
    const costlyChecks = ctx.costlyChecks;
    if (costlyChecks) {
      ctx.costlyChecks = undefined;
      await costlyChecks();
    }
    const request = buildUpstreamRequest(req, res, ctx, ctx.body);
    const outcome: UpstreamOutcome = (ctx.upstream = { attempts: 0 });
    if (request.overflow) outcome.servedBy = 'fallback';
    const state: Attempts = {
      outcome,
      tried: new Set(),
      stream: { started: false, meter: new UsageMeter(), tokens: undefined, identity: undefined, resumes: 0 },
      last: undefined,
      sameReplicaAllowed: false,
      staleRetries: 0,
      readmit: false,
      resuming: undefined,
    };
    /** An error answer, or one error event when an earlier attempt already started the stream. */
    const answer = (error: TeraError) => (state.stream.started ? endStreamWithError(res, ctx, error) : sendError(res, error));
    const gone = () => settleAbortedUsage(ctx, request.body, state.stream.started);

    while (outcome.attempts < maxAttempts + state.stream.resumes && performance.now() < request.deadline) {
      if (ctx.signal.aborted) return gone();
      if (!(await readmitted(request, state, answer))) return ctx.signal.aborted ? gone() : undefined;
      const replica = pickReplica(request, state);
      if (!replica) break;
      state.tried.add(replica);
      outcome.attempts++;
      outcome.replica = replica.id;
      events.emit('attempt', ctx, replica.id, outcome.attempts);
      const record: AttemptRecord = { replica: replica.id, start: performance.now(), outcome: 'ok' };
      (outcome.attemptLog ??= []).push(record);
      const breakerBefore = replica.breaker.state;
      replica.inFlight++;
      // Admission's hold on the pool becomes this in-flight count.
      ctx.pool?.reservation?.settle();
      try {
        const refused = await runAttempt(request, replica, res, state, record);
        if (refused) answer(refused);
        return;
      } catch (err) {
        record.end = performance.now();
        const decision = classifyFailure(err, request, replica, state, record, breakerBefore);
        if (decision.next === 'gone') {
          gone();
          events.emit('clientAbort', ctx);
          return;
        }
        if (decision.next === 'answer') return answer(decision.error);
        if (decision.next === 'retry-uncounted') {
          outcome.attemptLog.pop();
          outcome.attempts--;
          if (decision.again) state.tried.delete(replica);
        }
      } finally {
        record.end ??= performance.now();
        replica.inFlight--;
        deps.onRelease();
      }
    }
    answer(finalError(state));
  };
  return serve;
}
