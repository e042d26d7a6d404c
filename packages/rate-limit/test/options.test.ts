import { describe, expect, it } from 'vitest';
import { budgets, rateLimit } from '../src/index.js';

describe('rate-limit options', () => {
  it('rateLimit(): a wrong option throws naming it', () => {
    expect(() => rateLimit({ defaults: { concurrency: 0 } })).toThrow(/rateLimit\(\): option 'defaults.concurrency'/);
    expect(() => rateLimit({ burstSeconds: -1 })).toThrow(/option 'burstSeconds'/);
    expect(() => rateLimit({ store: {} as never })).toThrow(/option 'store': must be a limiter Store/);
    expect(() => rateLimit({ onStoreError: 'retry' as never })).toThrow(/option 'onStoreError'/);
  });
  it('budgets(): a wrong option throws naming it', () => {
    expect(() => budgets({ holdTtlMs: 0 })).toThrow(/budgets\(\): option 'holdTtlMs'/);
    expect(() => budgets({ store: { reserve() {} } as never })).toThrow(/option 'store': must be a BudgetStore/);
    expect(() => budgets({ prices: { input: -1, output: 0 } })).toThrow(/option 'prices.input'/);
  });
});
