import { randomUUID } from 'node:crypto';
import { refill, type AcquireRequest, type AcquireResult, type Store } from './store.js';

interface Bucket {
  tokens: number;
  updatedAt: number;
  leases: Map<string, number>;
}

/** The embedded default: state in this process's memory. */
export class MemoryStore implements Store {
  private readonly buckets = new Map<string, Bucket>();
  private readonly sweep: NodeJS.Timeout;

  constructor(private readonly now: () => number = Date.now) {
    // Forget idle keys whose bucket is full and who hold no lease.
    this.sweep = setInterval(() => this.forgetIdle(), 60_000);
    this.sweep.unref();
  }

  private bucket(key: string, burst: number, now: number): Bucket {
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: burst, updatedAt: now, leases: new Map() };
      this.buckets.set(key, b);
    }
    return b;
  }

  acquire(key: string, r: AcquireRequest): Promise<AcquireResult> {
    const now = this.now();
    const b = this.bucket(key, r.burst, now);
    // Expired leases (their process died) matter only at the limit: sweeping them there keeps an
    // admission O(1) instead of O(requests in flight for the key).
    if (b.leases.size >= r.concurrency) for (const [id, expiresAt] of b.leases) if (expiresAt <= now) b.leases.delete(id);
    b.tokens = refill(b.tokens, b.updatedAt, now, r.tokensPerSecond, r.burst);
    b.updatedAt = now;
    const resetTokensMs = ((r.burst - b.tokens) / r.tokensPerSecond) * 1000;
    if (b.leases.size >= r.concurrency) {
      return Promise.resolve({
        ok: false,
        reason: 'concurrency',
        retryAfterMs: 1000,
        remainingRequests: 0,
        remainingTokens: b.tokens,
        resetTokensMs,
      });
    }
    if (b.tokens <= 0) {
      return Promise.resolve({
        ok: false,
        reason: 'tokens',
        retryAfterMs: (-b.tokens / r.tokensPerSecond) * 1000 + 1,
        remainingRequests: r.concurrency - b.leases.size,
        remainingTokens: b.tokens,
        resetTokensMs,
      });
    }
    const leaseId = randomUUID();
    b.leases.set(leaseId, now + r.leaseTtlMs);
    b.tokens -= r.cost;
    return Promise.resolve({
      ok: true,
      leaseId,
      remainingRequests: r.concurrency - b.leases.size,
      remainingTokens: b.tokens,
      resetTokensMs: ((r.burst - b.tokens) / r.tokensPerSecond) * 1000,
    });
  }

  release(key: string, leaseId: string, adjust: number, r: Pick<AcquireRequest, 'tokensPerSecond' | 'burst'>): Promise<void> {
    const b = this.buckets.get(key);
    if (b?.leases.delete(leaseId)) {
      const now = this.now();
      b.tokens = Math.min(r.burst, refill(b.tokens, b.updatedAt, now, r.tokensPerSecond, r.burst) - adjust);
      b.updatedAt = now;
    }
    return Promise.resolve();
  }

  /** Leases held for a key (tests and introspection). */
  inFlight(key: string): number {
    const now = this.now();
    let n = 0;
    for (const expiresAt of this.buckets.get(key)?.leases.values() ?? []) if (expiresAt > now) n++;
    return n;
  }

  private forgetIdle(): void {
    for (const [key, b] of this.buckets) if (b.leases.size === 0 && this.now() - b.updatedAt > 600_000) this.buckets.delete(key);
  }

  close(): Promise<void> {
    clearInterval(this.sweep);
    return Promise.resolve();
  }
}
