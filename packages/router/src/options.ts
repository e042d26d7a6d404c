import { z } from 'zod';
import { fn } from '@tera-gw/core';
import type { RouteRequest } from './router.js';

/** `createRouter()`'s options. */
export const routerOptionsSchema = z.strictObject({
  /** `cache-aware` keeps conversations on the replica holding their prefix; `least-request` balances in-flight counts. @defaultValue `'cache-aware'` */
  strategy: z.enum(['cache-aware', 'least-request']).default('cache-aware'),
  /** How the cache-aware score weighs a replica. */
  weights: z
    .strictObject({
      /** Matched prefix share. @defaultValue 3 */
      prefix: z.number().min(0).default(3),
      /** Requests in flight plus vLLM's waiting queue. @defaultValue 1 */
      load: z.number().min(0).default(1),
      /** Free KV cache. @defaultValue 0.5 */
      kvCache: z.number().min(0).default(0.5),
    })
    .prefault({}),
  /** Bytes per prefix block (about 32 tokens). @defaultValue 128 */
  blockChars: z.int().min(4).default(128),
  /** Blocks considered per request (caps the cost on long prompts). @defaultValue 256 */
  maxBlocks: z.int().positive().default(256),
  /** Blocks remembered per replica. @defaultValue 8192 (about 262k tokens) */
  indexCapacity: z.int().positive().default(8192),
  /** Bounded load: a replica above (1 + epsilon) x the mean in-flight count (+1) is passed over while others are not. @defaultValue 0.25 */
  epsilon: z.number().min(0).default(0.25),
  /** Affinity key for requests without `prompt_cache_key` (e.g. a user or session id). */
  affinityKey: fn<(request: RouteRequest) => string | undefined>().optional(),
  /** Source of randomness for tie-breaks. @defaultValue `Math.random` */
  random: fn<() => number>().default(() => Math.random),
});

export type RouterOptions = z.input<typeof routerOptionsSchema>;
export type Weights = z.output<typeof routerOptionsSchema>['weights'];
