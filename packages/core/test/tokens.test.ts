import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { countTextTokens, loadTokenizer } from '../src/index.js';
import { MAX_PIECE_CHARS, SHORT_TOKEN_MEMO_ENTRIES, observeTokenizerPieces, shortTokenMemoSize } from '../src/internal.js';

afterEach(() => observeTokenizerPieces(undefined));

describe('countTextTokens', () => {
  it('short texts (remembered) count exactly as the tokenizer does, on every call, past the memo bound', async () => {
    const encoding = await loadTokenizer();
    const exact = (text: string) => encoding.countTokens(text, { disallowedSpecial: new Set() });
    const texts = ['hello', 'world', ' the', 'é', '🤔x', '<|end|>', ' ', '\n\n', 'abcdefghijklmnopqrstuvwx', 'abcdefghijklmnopqrstuvwxy'];
    for (let round = 0; round < 3; round++) for (const t of texts) expect(countTextTokens(t), t).toBe(exact(t));
    // More distinct short texts than the memo holds: it starts over and stays exact.
    for (let i = 0; i < 9000; i++) {
      countTextTokens(`w${i}`);
      expect(shortTokenMemoSize()).toBeLessThanOrEqual(SHORT_TOKEN_MEMO_ENTRIES);
    }
    expect(shortTokenMemoSize()).toBeLessThan(9000 - SHORT_TOKEN_MEMO_ENTRIES + 10);
    for (const t of [...texts, 'w1', 'w8999', 'w123456']) expect(countTextTokens(t), t).toBe(exact(t));
  });

  it('ordinary prose of any length counts exactly as the tokenizer does', async () => {
    const encoding = await loadTokenizer();
    const words = ['the', 'model', 'answered', 'quickly,', 'and', 'then', 'paused.', 'Über', '42', "it's"];
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: words.length - 1 }), { minLength: 100, maxLength: 3000, size: 'max' }), (picks) => {
        const text = picks.map((i) => words[i]).join(' ');
        expect(countTextTokens(text)).toBe(encoding.countTokens(text, { disallowedSpecial: new Set() }));
      }),
      { numRuns: 40, seed: 7 },
    );
  });

  it('is linear on every input: no piece longer than MAX_PIECE_CHARS reaches the tokenizer, and the pieces are the text', async () => {
    await loadTokenizer();
    // The runs that made one pre-token of a whole prompt (quadratic), and their neighbours.
    const alphabet = ['!', '/', '\r', '\n', ' ', '\t', 'a', 'Z', '0', '.', '漢', '😀', '\u00a0', '<|end|>', '{"'];
    const hostile = fc
      .array(fc.tuple(fc.integer({ min: 0, max: alphabet.length - 1 }), fc.integer({ min: 1, max: 3000 })), {
        minLength: 1,
        maxLength: 12,
        size: 'max',
      })
      .map((runs) => runs.map(([i, n]) => alphabet[i]!.repeat(n)).join(''));
    fc.assert(
      fc.property(hostile, (text) => {
        const pieces: string[] = [];
        observeTokenizerPieces((piece) => pieces.push(piece));
        const count = countTextTokens(text);
        observeTokenizerPieces(undefined);
        if (text.length > 24) expect(pieces.join('')).toBe(text);
        for (const piece of pieces) expect(piece.length).toBeLessThanOrEqual(MAX_PIECE_CHARS);
        expect(count).toBeGreaterThan(0);
        // A token covers at least one UTF-8 byte: the bound limits and budgets rely on.
        expect(count).toBeLessThanOrEqual(Buffer.byteLength(text));
      }),
      { numRuns: 150, seed: 20261206, examples: [[`!${'/\r\n'.repeat(40_000)}`], ['a'.repeat(200_000)], [' '.repeat(120_000)]] },
    );
  });
});
