import { describe, expect, it } from 'vitest';
import { countTextTokens, loadTokenizer } from '../src/index.js';

describe('countTextTokens', () => {
  it('short texts (remembered) count exactly as the tokenizer does, on every call, past the memo bound', async () => {
    const encoding = await loadTokenizer();
    const exact = (text: string) => encoding.countTokens(text, { disallowedSpecial: new Set() });
    const texts = ['hello', 'world', ' the', 'é', '🤔x', '<|end|>', ' ', '\n\n', 'abcdefghijklmnopqrstuvwx', 'abcdefghijklmnopqrstuvwxy'];
    for (let round = 0; round < 3; round++) for (const t of texts) expect(countTextTokens(t), t).toBe(exact(t));
    // More distinct short texts than the memo holds: it starts over and stays exact.
    for (let i = 0; i < 9000; i++) countTextTokens(`w${i}`);
    for (const t of [...texts, 'w1', 'w8999', 'w123456']) expect(countTextTokens(t), t).toBe(exact(t));
  });
});
