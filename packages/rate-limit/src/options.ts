import { z } from 'zod';
import { fn, implementing, type Logger, type RequestContext } from '@tera-gw/core';
import type { BudgetStore } from './budgets.js';
import type { Store } from './store.js';

const logger = implementing<Logger>('a logger (pino or one of its shape)', 'error', 'warn', 'info', 'debug', 'child');

export const rateLimitOptionsSchema = z.strictObject({
  /** Where leases and buckets live: one process, or Redis (`RedisStore` of `@tera-gw/rate-limit-redis`) for many. @defaultValue a new MemoryStore */
  store: implementing<Store>('a limiter Store', 'acquire', 'release').optional(),
  /** For keys whose record has no limits (and requests with no key). */
  defaults: z
    .strictObject({
      /** Requests in flight per key. @defaultValue 8 */
      concurrency: z.int().positive().default(8),
      /** Token bucket refill rate per key. @defaultValue 2000 */
      tokensPerSecond: z.number().positive().default(2000),
    })
    .prefault({}),
  /** Bucket capacity, in seconds of refill. @defaultValue 30 */
  burstSeconds: z.number().positive().default(30),
  /** Output tokens reserved at admission when the request names no budget. @defaultValue 4096 */
  outputReservation: z.int().positive().default(4096),
  /** A lease not released within this long expires (its process died). @defaultValue 15 minutes */
  leaseTtlMs: z
    .int()
    .positive()
    .default(15 * 60_000),
  /** When the store fails (Redis down): `open` admits and logs; `closed` answers 503. @defaultValue `'open'` */
  onStoreError: z.enum(['open', 'closed']).default('open'),
  /** Where store failures are logged (at most once a minute). @defaultValue the console */
  logger: logger.optional(),
  /**
   * Tokens a request is charged at admission, for routes that weigh something else than a
   * generation (counting a prompt, reading a stored response). @defaultValue the prompt's estimate plus its output cap
   */
  cost: fn<(ctx: RequestContext) => number>().optional(),
});

export type RateLimitOptions = z.input<typeof rateLimitOptionsSchema>;

export const budgetOptionsSchema = z.strictObject({
  /** Where budgets are kept (`RedisBudgetStore` of `@tera-gw/rate-limit-redis` for many hosts). @defaultValue a new MemoryBudgetStore */
  store: implementing<BudgetStore>('a BudgetStore', 'reserve', 'settle').optional(),
  /** USD per million tokens; reasoning tokens are output. @defaultValue `{ input: 0.07, output: 0.25 }` */
  prices: z.strictObject({ input: z.number().min(0), output: z.number().min(0) }).optional(),
  /** Output tokens held when the request names no `max_tokens`. @defaultValue 4096 */
  outputReservation: z.int().positive().default(4096),
  /** A hold not settled within this long is dropped (its process died). @defaultValue 15 minutes */
  holdTtlMs: z
    .int()
    .positive()
    .default(15 * 60_000),
  /** When the store fails (Redis down): `open` admits and logs; `closed` answers 503. @defaultValue `'open'` */
  onStoreError: z.enum(['open', 'closed']).default('open'),
  /** Where store failures are logged (at most once a minute). @defaultValue the console */
  logger: logger.optional(),
  /** The clock, for tests. @defaultValue Date.now */
  now: fn<() => number>().default(() => Date.now),
});

export type BudgetOptions = z.input<typeof budgetOptionsSchema>;
