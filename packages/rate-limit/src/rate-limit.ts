import type { ServerResponse } from 'node:http';
import { context, keyIdOf, rateLimitError, recordEvent, serviceUnavailable, type Middleware, type RequestContext } from '@tera-gw/core';
import { MemoryStore } from './memory-store.js';
import { throttledWarn, type AcquireRequest, type LimitState, type Store } from './store.js';

export interface RateLimitOptions {
  /** @defaultValue a new MemoryStore */
  store?: Store;
  /** For keys whose record has no limits (and requests with no key). @defaultValue `{ concurrency: 8, tokensPerSecond: 2000 }` */
  defaults?: { concurrency?: number; tokensPerSecond?: number };
  /** Bucket capacity in seconds of refill. @defaultValue 30 */
  burstSeconds?: number;
  /** Output tokens reserved at admission when the request names no budget. @defaultValue 4096 */
  outputReservation?: number;
  /** A lease not released within this long expires (its process died). @defaultValue 15 minutes */
  leaseTtlMs?: number;
  /** When the store fails (Redis down): `open` admits and logs; `closed` answers 503. @defaultValue `'open'` */
  onStoreError?: 'open' | 'closed';
  /** Where store failures are reported. @defaultValue console.warn, at most once a minute */
  log?: (message: string) => void;
  /**
   * Tokens a request is charged at admission, for routes that weigh something else than a
   * generation (counting a prompt, reading a stored response). @defaultValue `admissionCost`
   */
  cost?: (ctx: RequestContext) => number;
}

function validatePositive(name: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
    throw new TypeError(`rateLimit(): option '${name}' must be a positive number, got ${String(value)}`);
  }
}

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

/** Tokens charged at admission: the exact prompt count if validation made one, else bytes / 4, plus the output budget. */
export function admissionCost(ctx: RequestContext, outputReservation: number): number {
  const prompt = ctx.promptTokens ?? Math.ceil((ctx.promptTokenEstimate ?? 0) / 4);
  const output = ctx.body?.max_completion_tokens ?? ctx.body?.max_tokens ?? outputReservation;
  return prompt + output;
}

/**
 * Per key: at most N requests in flight (a lease from admission until the response ends or
 * the client leaves, on every path) and a token bucket with debt. Over a limit -> 429
 * `rate_limit_error` with an honest `Retry-After`; OpenAI's `x-ratelimit-*` headers on every
 * response. The charge is reconciled to the upstream's real usage; nothing is charged twice.
 */
export function rateLimit(options: RateLimitOptions = {}): Middleware {
  validatePositive('defaults.concurrency', options.defaults?.concurrency);
  validatePositive('defaults.tokensPerSecond', options.defaults?.tokensPerSecond);
  validatePositive('burstSeconds', options.burstSeconds);
  validatePositive('leaseTtlMs', options.leaseTtlMs);
  const store = options.store ?? new MemoryStore();
  const defaults = { concurrency: options.defaults?.concurrency ?? 8, tokensPerSecond: options.defaults?.tokensPerSecond ?? 2000 };
  const burstSeconds = options.burstSeconds ?? 30;
  const reservation = options.outputReservation ?? 4096;
  const leaseTtlMs = options.leaseTtlMs ?? 15 * 60_000;
  const failOpen = (options.onStoreError ?? 'open') === 'open';
  const log = options.log ?? throttledWarn();

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
            .catch((err: unknown) => log(`rate-limit: releasing a lease failed: ${String(err)}`));
        });
        next();
      },
      (err: unknown) => {
        log(`rate-limit: the store failed (${String(err)}); ${failOpen ? 'admitting' : 'refusing'} requests`);
        if (failOpen) return next();
        next(serviceUnavailable('The rate limiter is unavailable; retry shortly.', 1, 'rate_limiter_unavailable'));
      },
    );
  };
}
