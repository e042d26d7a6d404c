import { describe, expect, it } from 'vitest';
import { createRouter } from '../src/index.js';

describe('createRouter options', () => {
  it('a wrong option throws naming it', () => {
    expect(() => createRouter({ strategy: 'random' as never })).toThrow(/createRouter\(\): option 'strategy'/);
    expect(() => createRouter({ weights: { prefix: -1 } })).toThrow(/option 'weights.prefix'/);
    expect(() => createRouter({ blockChars: 2 })).toThrow(/option 'blockChars'/);
    expect(() => createRouter({ affinity: () => 'x' } as never)).toThrow(/unknown option 'affinity'/);
    expect(createRouter({ weights: { load: 2 } }).pick({}, [{ id: 'a', inFlight: 0 }])?.id).toBe('a');
  });
});
