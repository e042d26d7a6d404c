import { describe, expect, it } from 'vitest';
import { reasoning, reasoningTransform } from '../src/index.js';

describe('reasoning options', () => {
  it('a wrong option throws naming it, in the middleware and the transform', () => {
    expect(() => reasoning({ output: 'thoughts' as never })).toThrow(/reasoning\(\): option 'output'/);
    expect(() => reasoningTransform({ upstreamField: 'think' as never })).toThrow(/reasoningTransform\(\): option 'upstreamField'/);
    expect(() => reasoning({ outputs: 'both' } as never)).toThrow(/unknown option 'outputs'/);
  });
});
