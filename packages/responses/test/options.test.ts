import { describe, expect, it } from 'vitest';
import { responses } from '../src/index.js';

describe('responses options', () => {
  it('a wrong option throws naming it', () => {
    expect(() => responses({ hostedTools: 'ignore' as never })).toThrow(/responses\(\): option 'hostedTools'/);
    expect(() => responses({ secrets: ['short'] })).toThrow(/option 'secrets\[0\]': each secret needs at least 16 characters/);
    expect(() => responses({ store: { put() {} } as never })).toThrow(/option 'store'/);
    expect(() => responses({ validation: { maxBodyBytes: -1 } })).toThrow(/option 'validation.maxBodyBytes'/);
  });
});
