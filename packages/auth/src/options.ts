import { z } from 'zod';
import { fn, implementing } from '@tera-gw/core';
import type { KeyStore } from './keys.js';

/** A key's spend budget per UTC calendar period (`budgets()` of `@tera-gw/rate-limit` enforces it). */
export const keyBudgetSchema = z
  .strictObject({
    usd: z.number().positive().optional(),
    tokens: z.number().positive().optional(),
    period: z.enum(['day', 'week', 'month', 'total']),
  })
  .refine((b) => b.usd !== undefined || b.tokens !== undefined, 'a budget needs `usd` and/or `tokens`');

/** One key for `MemoryKeyStore` (`auth.keys` of `createGateway`, or an entry of `pnpm start`'s keys file). */
export const keyEntrySchema = z
  .strictObject({
    /** The key in clear; hashed at once and not kept. */
    key: z.string().min(8, 'a key needs at least 8 characters').optional(),
    /** Or its SHA-256 in hex. */
    sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/i, 'must be 64 hex digits')
      .optional(),
    /** Stable id for logs, spans, usage and limits. @defaultValue `key_` and 12 hex digits of the hash */
    id: z.string().min(1).optional(),
    /** Models the key may use (aliases included); `'*'` for all. @defaultValue `'*'` */
    models: z.union([z.array(z.string()), z.literal('*')]).optional(),
    /** Requests in flight at once. @defaultValue the limiter's default */
    concurrency: z.int().positive().optional(),
    /** Token bucket refill rate. @defaultValue the limiter's default */
    tokensPerSecond: z.number().positive().optional(),
    /** After this instant the key answers 401. */
    expiresAt: z.union([z.string(), z.number(), z.date()]).optional(),
    disabled: z.boolean().optional(),
    /** Keys of one team share prompt caches under `cacheIsolation: 'team'`. */
    team: z.string().min(1).optional(),
    /** May read operator-only details (replica URLs and load on `/health`, Prometheus). */
    operator: z.boolean().optional(),
    /** e.g. `{ "usd": 5, "period": "day" }` or `{ "tokens": 1000000, "period": "month" }`. */
    budget: keyBudgetSchema.optional(),
    /** Admission band while the pool is full: higher first; below 0 is sheddable (refused at once). @defaultValue 0 */
    priority: z.int().min(-1000).max(1000).optional(),
    /** May set `X-Tera-Fairness-Id` so its end users queue as separate flows (an in-house gateway fronting many users with one key). */
    fairnessFromHeader: z.boolean().optional(),
  })
  .refine((e) => e.key !== undefined || e.sha256 !== undefined, { message: 'give `key` or `sha256`', path: ['key'] })
  .refine((e) => e.expiresAt === undefined || !Number.isNaN(new Date(e.expiresAt).getTime()), {
    message: 'is not a date',
    path: ['expiresAt'],
  });

export type KeyEntry = z.input<typeof keyEntrySchema>;
export type KeyBudget = z.output<typeof keyBudgetSchema>;

export const authOptionsSchema = z.strictObject({
  /** Where keys are looked up by their SHA-256. */
  keyStore: implementing<KeyStore>('a KeyStore', 'lookup'),
  /** The clock, for expiry. @defaultValue Date.now */
  now: fn<() => number>().default(() => Date.now),
});

export type AuthOptions = z.input<typeof authOptionsSchema>;
