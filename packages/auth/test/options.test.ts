import { describe, expect, it } from 'vitest';
import { auth, MemoryKeyStore } from '../src/index.js';

describe('auth options and key entries', () => {
  it('auth() needs a key store', () => {
    expect(() => auth({} as never)).toThrow(/auth\(\): option 'keyStore'/);
    expect(() => auth({ keyStore: {} as never })).toThrow(/must be a KeyStore/);
  });
  it('key entries are checked whole, each problem named by its place in the list', () => {
    expect(
      () => new MemoryKeyStore([{ key: 'sk-tera-aaaaaaaa' }, { key: 'sk-tera-bbbbbbbb', budget: { usd: 5, period: 'year' as never } }]),
    ).toThrow(/^keys\[1\]\.budget\.period: /);
    expect(() => new MemoryKeyStore([{ key: 'short' }], 'GATEWAY_KEYS')).toThrow(
      /^GATEWAY_KEYS\[0\]\.key: a key needs at least 8 characters/,
    );
    expect(() => new MemoryKeyStore([{ key: 'sk-tera-aaaaaaaa', colour: 'red' } as never])).toThrow(
      /^keys\[0\]\.colour: is not a known field/,
    );
    expect(() => new MemoryKeyStore([{ id: 'no-key' }])).toThrow(/^keys\[0\]\.key: give `key` or `sha256`/);
    expect(() => new MemoryKeyStore([{ key: 'sk-tera-aaaaaaaa', expiresAt: 'soon' }])).toThrow(/^keys\[0\]\.expiresAt: is not a date/);
  });
  it('the same key twice is refused, under two ids or one', () => {
    expect(
      () =>
        new MemoryKeyStore([
          { key: 'sk-tera-same-key-1', id: 'a' },
          { key: 'sk-tera-other-key', id: 'b' },
          { key: 'sk-tera-same-key-1', id: 'c' },
        ]),
    ).toThrow(/^keys\[2\]: the same key as keys\[0\]/);
  });
});
