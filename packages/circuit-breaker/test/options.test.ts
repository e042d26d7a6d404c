import { describe, expect, it } from 'vitest';
import { ReplicaBreaker } from '../src/index.js';

describe('ReplicaBreaker options', () => {
  it('a wrong option throws naming it; the defaults apply otherwise', () => {
    expect(() => new ReplicaBreaker('http://r', { resetTimeoutMs: -1 })).toThrow(/ReplicaBreaker: option 'resetTimeoutMs'/);
    expect(() => new ReplicaBreaker('http://r', { errorThresholdPercentage: 500 })).toThrow(/errorThresholdPercentage/);
    expect(() => new ReplicaBreaker('http://r', { retries: 3 } as never)).toThrow(/unknown option 'retries'/);
    const breaker = new ReplicaBreaker('http://r');
    expect(breaker.state).toBe('closed');
    breaker.shutdown();
  });
});
