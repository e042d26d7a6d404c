import type { ServerResponse } from 'node:http';
import {
  consoleLogger,
  context,
  estimatedPromptTokens,
  keyIdOf,
  outputTokensCap,
  parseOptions,
  rateLimitError,
  recordEvent,
  serviceUnavailable,
  throttled,
  type Middleware,
  type RequestContext,
} from '@tera-gw/core';
import { MemoryStore } from './memory-store.js';
import { rateLimitOptionsSchema, type RateLimitOptions } from './options.js';
import type { AcquireRequest, LimitState } from './store.js';

function setHeaders(res: ServerResponse, r: AcquireRequest, state: LimitState): void {
  if (res.headersSent) return;
  res.setHeader('x-ratelimit-limit-requests', String(r.concurrency));
  res.setHeader('x-ratelimit-remaining-requests', String(Math.max(0, state.remainingRequests)));
  res.setHeader('x-ratelimit-limit-tokens', String(Math.round(r.burst)));
  res.setHeader('x-ratelimit-remaining-tokens', String(Math.max(0, Math.floor(state.remainingTokens))));
  res.setHeader(
    'x-ratelimit-reset-tokens',
    `${Math.max(0, state.resetTokensMs / 1000)
      .toFixed(3)
      .replace(/\.?0+$/, '')}s`,
  );
}

/** Tokens charged at admission: the prompt's estimate (exact once counted) plus the output cap. */
export function admissionCost(ctx: RequestContext, outputReservation: number): number {
  return estimatedPromptTokens(ctx) + outputTokensCap(ctx, outputReservation);
}

/**
 * Per key: at most N requests in flight (a lease from admission until the response ends or
 * the client leaves, on every path) and a token bucket with debt. Over a limit -> 429
 * `rate_limit_error` with an honest `Retry-After`; OpenAI's `x-ratelimit-*` headers on every
 * response. The charge is reconciled to the upstream's real usage; nothing is charged twice.
 */
export function rateLimit(input: RateLimitOptions = {}): Middleware {
  const options = parseOptions(rateLimitOptionsSchema, input, 'rateLimit()');
  const store = options.store ?? new MemoryStore();
  const { defaults, burstSeconds, leaseTtlMs } = options;
  const reservation = options.outputReservation;
  const failOpen = options.onStoreError === 'open';
  const log = throttled(options.logger ?? consoleLogger());

  return function limit(req, res, next) {
    const ctx = context(req, res);
    const keyId = keyIdOf(ctx);
    const concurrency = ctx.key?.limits?.concurrency ?? defaults.concurrency;
    const tokensPerSecond = ctx.key?.limits?.tokensPerSecond ?? defaults.tokensPerSecond;
    const request: AcquireRequest = {
      cost: options.cost ? options.cost(ctx) : admissionCost(ctx, reservation),
      concurrency,
      tokensPerSecond,
      burst: tokensPerSecond * burstSeconds,
      leaseTtlMs,
    };
    store.acquire(keyId, request).then(
      (result) => {
        setHeaders(res, request, result);
        if (!result.ok) {
          const wait = result.retryAfterMs / 1000;
          recordEvent(ctx, 'tera.rate_limit.rejected', { 'tera.rate_limit.reason': result.reason, 'tera.retry_after_s': Math.ceil(wait) });
          const why = result.reason === 'concurrency' ? `${concurrency} requests in flight` : `${tokensPerSecond} tokens per second`;
          return next(
            rateLimitError(
              `Rate limit reached for this API key: ${why}. Retry after ${Math.ceil(wait)}s.`,
              wait,
              `rate_limit_${result.reason}`,
            ),
          );
        }
        let released = false;
        ctx.cleanups.push(() => {
          if (released) return;
          released = true;
          // Reconcile to the real total when the upstream reported it (otherwise keep the admission charge), plus what
          // the request consumed without billing it (attempts retried after the model's output failed, a stored read).
          const consumed = ctx.consumedTokens ?? 0;
          const actual = (ctx.usage ? ctx.usage.total_tokens : consumed > 0 ? 0 : request.cost) + consumed;
          const adjust = actual - request.cost;
          store
            .release(keyId, result.leaseId, adjust, request)
            .catch((err: unknown) => log.warn({ err, keyId }, 'rate-limit: releasing a lease failed'));
        });
        next();
      },
      (err: unknown) => {
        log.error({ err }, `rate-limit: the store failed; ${failOpen ? 'admitting' : 'refusing'} requests`);
        if (failOpen) return next();
        next(serviceUnavailable('The rate limiter is unavailable; retry shortly.', 1, 'rate_limiter_unavailable'));
      },
    );
  };
}
