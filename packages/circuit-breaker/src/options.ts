import { z } from 'zod';

/** One replica's breaker. Every field is optional; the defaults suit a vLLM replica. */
export const breakerOptionsSchema = z.strictObject({
  /** Consecutive upstream faults that open the breaker. @defaultValue 5 */
  consecutiveFailures: z.int().positive().default(5),
  /** Error percentage over the rolling window that opens it. @defaultValue 50 */
  errorThresholdPercentage: z.number().min(1).max(100).default(50),
  /** Requests the window must hold before the error rate counts. @defaultValue 20 */
  volumeThreshold: z.int().min(0).default(20),
  /** Rolling window length. @defaultValue 10000 ms */
  rollingWindowMs: z.int().positive().default(10_000),
  /** How long the breaker stays open before one probe request may pass (half-open). @defaultValue 5000 ms */
  resetTimeoutMs: z.int().positive().default(5000),
});

export type BreakerOptions = z.input<typeof breakerOptionsSchema>;
