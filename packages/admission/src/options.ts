import { z } from 'zod';
import { implementing, type UpstreamPool } from '@tera-gw/core';

export const admissionOptionsSchema = z.strictObject({
  /** The upstream pool (`@tera-gw/vllm`'s `adapter.pool`). */
  pool: implementing<UpstreamPool>('an UpstreamPool', 'room', 'down', 'reserve', 'onChange'),
  /**
   * Longest wait in the queue, in ms, then 429 (503 when the pool is down). A number for every band,
   * or per priority: `{ "1": 60000, "0": 20000, "default": 10000 }`. @defaultValue 30000
   */
  maxWaitMs: z
    .union([z.int().min(0), z.record(z.string().regex(/^(-?\d+|default)$/, 'a priority or "default"'), z.int().min(0))])
    .default(30_000),
  /** Caps on what waits, per flow and in all. */
  limits: z
    .strictObject({
      /** Requests queued in all. @defaultValue 1000 */
      maxQueued: z.int().positive().default(1000),
      /** Request bytes queued in all. @defaultValue 64 MiB */
      maxQueuedBytes: z
        .int()
        .positive()
        .default(64 * 1024 * 1024),
      /** Requests queued by one flow. @defaultValue 256 */
      maxQueuedPerFlow: z.int().positive().default(256),
      /** Request bytes queued by one flow. @defaultValue 16 MiB */
      maxQueuedBytesPerFlow: z
        .int()
        .positive()
        .default(16 * 1024 * 1024),
    })
    .prefault({}),
  /**
   * How flows of one band take turns: `requests` (round-robin, one request per turn) or `tokens`
   * (deficit round-robin on estimated prompt + output tokens, so long requests cost more turns).
   * @defaultValue `'requests'`
   */
  fairness: z.enum(['requests', 'tokens']).default('requests'),
  /** The header a key marked `fairnessFromHeader` sets to name its end user. @defaultValue `'x-tera-fairness-id'` */
  fairnessHeader: z
    .string()
    .regex(/^[A-Za-z0-9-]+$/, 'must be a header name')
    .default('x-tera-fairness-id'),
  /** `Retry-After` seconds before any drain rate was measured. @defaultValue 2 */
  retryAfterSeconds: z.int().positive().default(2),
  /**
   * Overflow to the upstream's fallback provider (`fallback` in `@tera-gw/vllm`): requests that have
   * waited `afterMs`, and those that would be refused, go there instead. Off when absent.
   */
  overflow: z.strictObject({ afterMs: z.int().min(0) }).optional(),
  /** Output tokens assumed for fairness by tokens when a request names no `max_tokens`. @defaultValue 1024 */
  outputEstimate: z.int().positive().default(1024),
});

export type AdmissionOptions = z.input<typeof admissionOptionsSchema>;
