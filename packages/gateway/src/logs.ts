import type { ServerResponse } from 'node:http';
import { PRICE_PER_MILLION, costUSD, keyIdOf, type Logger, type RequestContext } from '@tera-gw/core';
import type { VllmAdapter } from '@tera-gw/vllm';

type Prices = { readonly input: number; readonly output: number };

const round = (n: number | undefined) => (n === undefined ? undefined : Math.round(n * 10) / 10);

/**
 * The access line of one request: who, what, how it ended and what it cost. Ids and numbers
 * only: never a key, a prompt or a completion (a test parses the gateway's real output for them).
 */
export function accessLine(ctx: RequestContext, res: ServerResponse, prices: Prices = PRICE_PER_MILLION): Record<string, unknown> {
  const upstream = ctx.upstream;
  const usage = ctx.usage;
  const line: Record<string, unknown> = {
    requestId: ctx.id,
    keyId: ctx.key ? keyIdOf(ctx) : undefined,
    endpoint: ctx.operation ?? 'other',
    model: ctx.requestedModel ?? ctx.body?.model,
    stream: ctx.body?.stream === true,
    status: res.statusCode,
    durationMs: round(performance.now() - ctx.startTime),
  };
  if (ctx.errorType) Object.assign(line, { errorType: ctx.errorType, errorCode: ctx.errorCode });
  if (ctx.signal.aborted) line.aborted = ctx.abortReason ?? 'client_closed';
  if (ctx.pool?.queueMs !== undefined) line.queueMs = round(ctx.pool.queueMs);
  if (upstream) {
    Object.assign(line, { ttfbMs: round(upstream.firstByteMs), replica: upstream.replica, attempts: upstream.attempts });
    if (upstream.resumes) line.resumes = upstream.resumes;
    line.servedBy = upstream.servedBy ?? 'pool';
    const retries = (upstream.attemptLog ?? []).filter((a) => a.outcome === 'retried').map((a) => ({ replica: a.replica, why: a.error }));
    if (retries.length) line.retries = retries;
  }
  if (usage) {
    Object.assign(line, {
      inputTokens: usage.prompt_tokens,
      outputTokens: usage.completion_tokens,
      reasoningTokens: usage.completion_tokens_details?.reasoning_tokens ?? undefined,
      cachedTokens: usage.prompt_tokens_details?.cached_tokens ?? undefined,
      costUSD: costUSD(usage, prices),
    });
  }
  // The gateway's own span, as telemetry handed it upstream: `00-<trace>-<span>-<flags>`.
  const parent = ctx.traceHeaders?.traceparent.split('-');
  if (parent?.length === 4) Object.assign(line, { traceId: parent[1], spanId: parent[2] });
  return line;
}

/** Writes each request's access line at `info` once it ended and its usage is known. */
export function accessLog(logger: Logger, prices: Prices = PRICE_PER_MILLION): (ctx: RequestContext, res: ServerResponse) => void {
  return (ctx, res) => {
    const write = () => logger.info(accessLine(ctx, res, prices), 'request');
    if (ctx.usagePending) ctx.usagePending.then(write, write);
    else write();
  };
}

/**
 * One line per change of the pool's state, never one per request: a replica ready, lost (with its
 * cause), back, draining or gone, a breaker open or closed, a capacity learned, a name that did not
 * resolve, and `ready` when the first replica can take traffic.
 */
export function logLifecycle(upstream: VllmAdapter, logger: Logger): void {
  const seenReady = new Set<string>();
  let ready = false;
  upstream.events.on('replicaState', (replica, state, cause) => {
    if (state === 'ready') {
      logger.info({ replica }, seenReady.has(replica) ? 'replica back' : 'replica ready');
      seenReady.add(replica);
      if (!ready) {
        ready = true;
        logger.info(
          {
            replicas: upstream
              .replicas()
              .filter((r) => r.state === 'ready')
              .map((r) => r.url),
          },
          'ready',
        );
      }
    } else if (state === 'unhealthy' && seenReady.has(replica)) logger.warn({ replica, cause }, 'replica lost');
    else if (state === 'unhealthy') logger.warn({ replica, cause }, 'replica not ready');
    else if (state === 'draining') logger.info({ replica, cause }, 'replica draining');
  });
  upstream.events.on('replicaAdded', (replica) => logger.info({ replica }, 'replica added'));
  upstream.events.on('replicaRemoved', (replica) => logger.info({ replica }, 'replica removed'));
  upstream.events.on('breaker', (replica, state) => {
    if (state === 'open') logger.warn({ replica }, 'breaker open');
    else if (state === 'closed') logger.info({ replica }, 'breaker closed');
  });
  upstream.events.on('capacity', (replica, capacity) => logger.info({ replica, capacity }, 'capacity learned'));
  upstream.events.on('resolveError', (url, error) => logger.warn({ url, error }, 'replica name did not resolve'));
  // Per stream, but rare: a replica lost mid-stream, and what became of the stream.
  upstream.events.on('resume', (ctx, replica, outcome) => {
    const fields = { requestId: ctx.id, replica, outcome, generatedTokens: ctx.usage?.completion_tokens };
    if (outcome === 'started') logger.info(fields, 'stream resuming on another replica');
    else if (outcome === 'completed') logger.info(fields, 'stream resumed');
    else logger.warn(fields, 'stream not resumed');
  });
}
