/** What one admission asks of a store. All amounts in tokens; times in ms. */
export interface AcquireRequest {
  /** Tokens charged now: prompt tokens plus the output reservation. */
  cost: number;
  /** Requests in flight allowed for the key. */
  concurrency: number;
  /** Refill rate of the key's bucket. */
  tokensPerSecond: number;
  /** Bucket capacity. */
  burst: number;
  /** A lease not released within this long expires (its gateway process died). */
  leaseTtlMs: number;
}

export interface LimitState {
  /** Requests still allowed in flight after this decision. */
  remainingRequests: number;
  /** Tokens left in the bucket after this decision (negative: debt). */
  remainingTokens: number;
  /** Until the bucket is full again. */
  resetTokensMs: number;
}

export type AcquireResult =
  ({ ok: true; leaseId: string } & LimitState) | ({ ok: false; reason: 'concurrency' | 'tokens'; retryAfterMs: number } & LimitState);

/**
 * Where limiter state lives. Each call is one atomic decision, so several gateway processes
 * can share a store (see `@tera-gw/rate-limit-redis`).
 */
export interface Store {
  acquire(key: string, request: AcquireRequest): Promise<AcquireResult>;
  /** Ends a lease and corrects the charge by `adjust` tokens (negative refunds). Idempotent per lease. */
  release(key: string, leaseId: string, adjust: number, request: Pick<AcquireRequest, 'tokensPerSecond' | 'burst'>): Promise<void>;
  close?(): Promise<void>;
  /** Resolves when the store answers (the gateway's readiness probe asks); absent for a store in memory. */
  ping?(): Promise<void>;
}

/** Token bucket arithmetic shared by the stores: refill to now, capped at the burst. */
export function refill(tokens: number, updatedAt: number, now: number, tokensPerSecond: number, burst: number): number {
  return Math.min(burst, tokens + ((now - updatedAt) / 1000) * tokensPerSecond);
}
