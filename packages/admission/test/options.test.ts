import { describe, expect, it } from 'vitest';
import { admission } from '../src/index.js';

const pool = { room: () => Infinity, down: () => false, reserve: () => ({ settle() {} }), onChange: () => () => undefined };

describe('admission options', () => {
  it('a wrong option throws naming it', () => {
    expect(() => admission({} as never)).toThrow(/admission\(\): option 'pool'/);
    expect(() => admission({ pool, fairness: 'weighted' as never })).toThrow(/option 'fairness'/);
    expect(() => admission({ pool, maxWaitMs: { urgent: 5 } })).toThrow(/option 'maxWaitMs/);
    expect(() => admission({ pool, limits: { maxQueued: 0 } })).toThrow(/option 'limits.maxQueued'/);
    admission({ pool, maxWaitMs: { '1': 60_000, default: 10_000 } }).close();
  });
});
