import { afterAll, describe, it } from 'vitest';
import { MemoryStore } from '../src/index.js';
import { storeConformance } from '../src/conformance.js';

describe('MemoryStore meets the Store conformance suite', () => {
  const store = new MemoryStore();
  afterAll(() => store.close());
  for (const c of storeConformance) it(c.name, () => c.run(store));
});
