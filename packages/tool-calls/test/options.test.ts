import { describe, expect, it } from 'vitest';
import { toolCalls } from '../src/index.js';

describe('toolCalls options', () => {
  it('a wrong option throws naming it', () => {
    expect(() => toolCalls({ onInvalid: 'drop' as never })).toThrow(/toolCalls\(\): option 'onInvalid'/);
    expect(() => toolCalls({ mode: 'stream' as never })).toThrow(/option 'mode'/);
    expect(() => toolCalls({ strict: true } as never)).toThrow(/unknown option 'strict'/);
  });
});
