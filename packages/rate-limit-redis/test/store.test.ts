import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeConformance } from '@tera-gw/rate-limit/conformance';
import { RedisBudgetStore, RedisStore } from '../src/index.js';
import { recordingLogger } from '../../../test/helpers/logger.js';
import { freePort } from '../../../test/helpers/ports.js';
import { redisAvailable, startRedis, type RedisProcess } from '../../../test/helpers/processes.js';

const withRedis = redisAvailable();

describe('RedisStore options', () => {
  it('a client or a URL, never both, never neither', () => {
    expect(() => new RedisStore({} as never)).toThrow(/RedisStore: option 'client'/);
    expect(() => new RedisStore({ url: 'http://127.0.0.1:6379' })).toThrow(/must be a redis:\/\/ or rediss:\/\/ URL/);
    expect(() => new RedisStore({ url: 'redis://127.0.0.1:1', client: {} } as never)).toThrow(/RedisStore/);
    expect(() => new RedisBudgetStore({ url: 'redis://127.0.0.1:1', connectWaitMs: 0 })).toThrow(
      /RedisBudgetStore: option 'connectWaitMs'/,
    );
  });

  it('a Redis that cannot be reached is logged, once, and each decision fails fast', async () => {
    const logger = recordingLogger();
    const store = new RedisStore({ url: `redis://127.0.0.1:${await freePort()}`, connectWaitMs: 100, logger });
    try {
      await expect(store.acquire('k', { cost: 1, concurrency: 1, tokensPerSecond: 1, burst: 1, leaseTtlMs: 1000 })).rejects.toThrow();
      await new Promise((r) => setTimeout(r, 300));
      const errors = logger.lines.filter((l) => l.message === 'RedisStore: Redis connection error');
      expect(errors).toHaveLength(1);
      expect(errors[0]!.fields.err).toBeInstanceOf(Error);
    } finally {
      await store.close();
    }
  });
});

describe.runIf(withRedis)('RedisStore meets the Store conformance suite', () => {
  let redis: RedisProcess;
  let store: RedisStore;
  let client: Redis;
  beforeAll(async () => {
    redis = await startRedis();
    store = new RedisStore({ url: redis.url });
    client = new Redis(redis.url);
  });
  afterAll(async () => {
    await store.close();
    client.disconnect();
    await redis.stop();
  });
  for (const c of storeConformance) it(c.name, () => c.run(store));
  it('with a client of its own, which close() leaves open', async () => {
    const mine = new RedisStore({ client, prefix: 'mine:' });
    await storeConformance[0]!.run(mine);
    await mine.close();
    expect(client.status).toBe('ready');
  });
});
