import type { IncomingMessage, ServerResponse } from 'node:http';
import { ReplicaBreaker, UpstreamFault } from '@tera-gw/circuit-breaker';
import {
  applyRequestTransforms,
  context,
  recordEvent,
  sendError,
  serverError,
  serviceUnavailable,
  TeraError,
  validTraceparent,
  validTracestate,
  type AttemptRecord,
  type RequestContext,
  type UpstreamOutcome,
} from '@tera-gw/core';
import type { RouteRequest, Router } from '@tera-gw/router';
import { ClientGone, readResponse, sendAttempt } from './attempt.js';
import { ModelOutputFailure, RequestFailure, classifyUpstreamError } from './outcome.js';
import { settleAbortedUsage } from './usage.js';
import { endStreamWithError, relayCompletion, relayStream, Retryable, type RelayDeps, type StreamState } from './relay.js';
import type { Replica } from './replica.js';

const isEventStreamResponse = (response: IncomingMessage) => (response.headers['content-type'] ?? '').startsWith('text/event-stream');

export interface ServeDeps extends RelayDeps {
  replicas: readonly Replica[];
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
}

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
 * The retry loop: picks a replica (router, breaker, health), sends the attempt, retries replica
 * faults on another replica before the first byte reached the client, and relays the answer.
 */
export function createServe(deps: ServeDeps): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { replicas, router, maxAttempts, timeouts, events, baseHeaders, forwardHeaders, retryAfter, cacheSalt, fallback } = deps;
  const traceHeaders = traceHeadersFor(forwardHeaders);
  /**
   * Available replicas not tried yet, full ones included: for a long conversation, a turn in the FIFO of
   * the replica that caches it costs less than prefilling it elsewhere (measured on bench:routing's agentic
   * workload, within noise of filtering to replicas with room); the router's load terms weigh the rest.
   */
  function candidates(tried: ReadonlySet<Replica>): Replica[] {
    const out: Replica[] = [];
    for (const r of replicas) if (!tried.has(r) && r.available) out.push(r);
    return out;
  }

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ctx = context(req, res);
    if (!ctx.body) throw new Error('vllm() needs validate() to run before it');
    const costlyChecks = ctx.costlyChecks;
    if (costlyChecks) {
      ctx.costlyChecks = undefined;
      await costlyChecks();
    }
    const body = applyRequestTransforms(ctx.body, ctx);
    const streaming = body.stream === true;
    const overflow = ctx.overflow === true && fallback !== undefined;
    if (overflow) {
      ctx.servedBy = 'fallback';
      res.setHeader('X-Tera-Served-By', 'fallback');
    }
    const caller = {
      usage: body.stream_options?.include_usage === true,
      continuousUsage: body.stream_options?.continuous_usage_stats === true,
    };
    // Usage is always asked for upstream, on every chunk, so it is known for limits and billing even when the
    // client leaves or the stream breaks; the caller sees what it asked for.
    const upstreamBody = { ...body };
    if (streaming) upstreamBody.stream_options = { ...body.stream_options, include_usage: true, continuous_usage_stats: true };
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
    const payload = Buffer.from(JSON.stringify(upstreamBody));
    const headers: Record<string, string> = { ...(overflow ? fallback.headers : baseHeaders), 'x-request-id': ctx.id };
    for (const name of forwardHeaders) {
      if (name === 'traceparent' || name === 'tracestate') continue;
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    Object.assign(headers, traceHeaders(req, ctx));
    const deadline = performance.now() + timeouts.totalMs;
    const tried = new Set<Replica>();
    const route: RouteRequest = { promptCacheKey: ctx.local?.promptCacheKey, prompt: body, partition: salt };
    const outcome: UpstreamOutcome = (ctx.upstream = { attempts: 0 });
    const stream: StreamState = { started: false };
    let lastFailure: UpstreamFault | ModelOutputFailure | RequestFailure | undefined;
    // A model-output failure is not the replica's: with no other replica ready, the same one tries again.
    let sameReplicaAllowed = false;
    let staleRetries = 0;
    /** An error answer, or one error event when an earlier attempt already started the stream. */
    const answer = (error: TeraError) => (stream.started ? endStreamWithError(res, ctx, error) : sendError(res, error));

    // A retry after the model's output failed takes its turn in admission again, once this attempt's slot is free.
    let readmit = false;
    while (outcome.attempts < maxAttempts && performance.now() < deadline) {
      if (ctx.signal.aborted) return settleAbortedUsage(ctx, body, stream.started);
      if (readmit && ctx.readmit) {
        readmit = false;
        try {
          await ctx.readmit();
        } catch (refused) {
          return answer(refused instanceof TeraError ? refused : serverError('The retry could not be admitted.', 'upstream_error'));
        }
        if (ctx.signal.aborted) return settleAbortedUsage(ctx, body, stream.started);
      }
      let replica: Replica | undefined;
      if (overflow) {
        const fb = fallback.replica;
        replica = fb.available && (!tried.has(fb) || sameReplicaAllowed) ? fb : undefined;
      } else {
        let pool = candidates(tried);
        if (!pool.length && sameReplicaAllowed) pool = candidates(new Set());
        replica = router.pick(route, pool);
        if (replica) router.record?.(route, replica);
      }
      if (!replica) break;
      tried.add(replica);
      outcome.attempts++;
      Object.assign(outcome, { replica: replica.id });
      events.emit('attempt', ctx, replica.id, outcome.attempts);
      const record: AttemptRecord = { replica: replica.id, start: performance.now(), outcome: 'ok' };
      (outcome.attemptLog ??= []).push(record);
      const breakerBefore = replica.breaker.state;
      replica.inFlight++;
      // Admission's hold on the pool becomes this in-flight count.
      ctx.reservation?.settle();
      try {
        const { response, request } = await replica.breaker.run(async () => {
          const attempt = await sendAttempt(replica, payload, headers, timeouts, ctx.signal);
          const status = attempt.response.statusCode ?? 0;
          if (status >= 500) {
            const text = await readResponse(attempt.response, timeouts.idleMs, deadline, ctx.signal).catch(() => Buffer.alloc(0));
            // Only a replica fault leaves breaker.run as an UpstreamFault, so only those are counted.
            const verdict = classifyUpstreamError(status, text.toString('utf8'));
            throw verdict.owner === 'replica' ? verdict.fault : verdict.owner === 'caller' ? verdict.error : verdict.failure;
          }
          return attempt;
        });
        const status = response.statusCode ?? 0;
        record.status = status;
        if (status >= 400 || (streaming && !isEventStreamResponse(response))) {
          // An error answer, or a JSON body where a stream was asked for (a 200 carrying an error object).
          const text = (await readResponse(response, timeouts.idleMs, deadline, ctx.signal)).toString('utf8');
          const verdict = classifyUpstreamError(status, text);
          if (verdict.owner === 'caller') return answer(verdict.error);
          throw verdict.owner === 'replica' ? new Retryable(verdict.fault) : verdict.failure;
        }
        const onAbort = () => request.destroy();
        ctx.signal.addEventListener('abort', onAbort, { once: true });
        try {
          if (streaming) await relayStream(deps, response, res, ctx, replica, caller, deadline, stream);
          else await relayCompletion(deps, response, res, ctx, deadline);
        } finally {
          ctx.signal.removeEventListener('abort', onAbort);
        }
        return;
      } catch (err) {
        record.end = performance.now();
        if (err instanceof ClientGone || ctx.signal.aborted) {
          record.outcome = 'aborted';
          settleAbortedUsage(ctx, body, stream.started);
          events.emit('clientAbort', ctx);
          return;
        }
        if (err instanceof ModelOutputFailure || err instanceof RequestFailure) {
          // Not the replica's fault: retried, never counted against its breaker.
          lastFailure = err;
          record.outcome = 'retried';
          record.error = err.message;
          const kind = err instanceof ModelOutputFailure ? err.kind : 'request_failure';
          if (err instanceof ModelOutputFailure) {
            sameReplicaAllowed = true;
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
          readmit = true;
          continue;
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
          lastFailure = fault;
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
        if (stream.started && err instanceof TeraError) return endStreamWithError(res, ctx, err);
        throw err;
      } finally {
        record.end ??= performance.now();
        replica.inFlight--;
        deps.onRelease();
      }
    }
    const attempts = `${outcome.attempts} attempt${outcome.attempts === 1 ? '' : 's'}`;
    // The failure itself (a replica's body included) is in the attempt log and the spans; the caller gets fixed text.
    const error =
      lastFailure instanceof ModelOutputFailure
        ? serverError(
            `The model produced ${ModelOutputFailure.describe(lastFailure.kind)} on ${attempts}. Retry the request; if it persists, report the X-Tera-Request-ID of this response.`,
            lastFailure.kind,
            lastFailure,
          )
        : lastFailure
          ? serverError(
              `The model server failed to answer after ${attempts}. Retry with backoff; if it persists, report the X-Tera-Request-ID of this response.`,
              'upstream_error',
              lastFailure,
            )
          : serviceUnavailable('No healthy openai/gpt-oss-20b replica is available right now; retry shortly.', retryAfter);
    if (stream.started) return endStreamWithError(res, ctx, error);
    throw error;
  }
  return serve;
}
