import { strict as assert } from 'node:assert';
import type { AcquireRequest, Store } from './store.js';

/**
 * What every limiter `Store` must do, as cases any test runner can run
 * (`@tera-gw/rate-limit/conformance`): `for (const c of storeConformance) it(c.name, () => c.run(store))`.
 * Each case uses keys of its own, so one store can serve them all. The memory store and the
 * Redis store run them; a store of yours should too.
 */
export interface ConformanceCase {
  readonly name: string;
  run(store: Store): Promise<void>;
}

const limits = (over: Partial<AcquireRequest> = {}): AcquireRequest => ({
  cost: 10,
  concurrency: 3,
  tokensPerSecond: 100,
  burst: 100,
  leaseTtlMs: 60_000,
  ...over,
});
let counter = 0;
const freshKey = () => `conformance-${process.pid}-${counter++}-${Date.now()}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const storeConformance: readonly ConformanceCase[] = [
  {
    name: 'a burst of parallel acquisitions admits exactly the concurrency limit',
    async run(store) {
      const key = freshKey();
      const results = await Promise.all(Array.from({ length: 20 }, () => store.acquire(key, limits({ concurrency: 3, cost: 1 }))));
      assert.equal(results.filter((r) => r.ok).length, 3);
      for (const r of results) if (!r.ok) assert.ok(r.reason === 'concurrency' && r.retryAfterMs >= 1000, JSON.stringify(r));
    },
  },
  {
    name: 'a released lease frees its slot; releasing it twice changes nothing',
    async run(store) {
      const key = freshKey();
      const a = await store.acquire(key, limits({ concurrency: 1, cost: 1 }));
      assert.ok(a.ok);
      assert.equal((await store.acquire(key, limits({ concurrency: 1, cost: 1 }))).ok, false);
      await store.release(key, a.leaseId, 0, limits());
      await store.release(key, a.leaseId, -1000, limits());
      const b = await store.acquire(key, limits({ concurrency: 1, cost: 1 }));
      assert.ok(b.ok);
      // The second release did not refund 1000 tokens: the bucket stays under its burst.
      assert.ok(b.remainingTokens <= 99, String(b.remainingTokens));
    },
  },
  {
    name: 'leases of a process that died expire',
    async run(store) {
      const key = freshKey();
      assert.ok((await store.acquire(key, limits({ concurrency: 1, leaseTtlMs: 150 }))).ok);
      assert.equal((await store.acquire(key, limits({ concurrency: 1, leaseTtlMs: 150 }))).ok, false);
      await sleep(250);
      assert.ok((await store.acquire(key, limits({ concurrency: 1, leaseTtlMs: 150 }))).ok);
    },
  },
  {
    name: 'a token bucket with debt: Retry-After says when it is paid, and reconciliation refunds',
    async run(store) {
      const key = freshKey();
      const r1 = await store.acquire(key, limits({ cost: 150, concurrency: 10 }));
      assert.ok(r1.ok);
      assert.ok(Math.abs(r1.remainingTokens + 50) < 1, String(r1.remainingTokens));
      const r2 = await store.acquire(key, limits({ cost: 1, concurrency: 10 }));
      assert.ok(!r2.ok && r2.reason === 'tokens', JSON.stringify(r2));
      // 50 tokens of debt at 100 a second.
      assert.ok(r2.retryAfterMs > 400 && r2.retryAfterMs < 600, String(r2.retryAfterMs));
      await sleep(r2.retryAfterMs + 20);
      assert.ok((await store.acquire(key, limits({ cost: 1, concurrency: 10 }))).ok);
      // The upstream said 30 tokens, not 150: 120 come back.
      await store.release(key, r1.leaseId, 30 - 150, limits());
      const r4 = await store.acquire(key, limits({ cost: 1, concurrency: 10 }));
      assert.ok(r4.ok && r4.remainingTokens > 60, JSON.stringify(r4));
    },
  },
  {
    name: 'keys are independent: one at its limit leaves another free',
    async run(store) {
      const busy = freshKey();
      const free = freshKey();
      assert.ok((await store.acquire(busy, limits({ concurrency: 1 }))).ok);
      assert.equal((await store.acquire(busy, limits({ concurrency: 1 }))).ok, false);
      assert.ok((await store.acquire(free, limits({ concurrency: 1 }))).ok);
    },
  },
];
