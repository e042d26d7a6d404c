import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisStore } from '@tera-gw/rate-limit-redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { redisAvailable, spawnGateway, spawnSim, startRedis, type RedisProcess, type SimProcess } from '../helpers/processes.js';

const model = 'openai/gpt-oss-20b';
const withRedis = redisAvailable();
let redis: RedisProcess | undefined;
beforeAll(async () => {
  if (withRedis) redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describe('limits through the gateway', () => {
  let sim: SimProcess;
  let gw: Mounted;
  beforeAll(async () => {
    sim = await spawnSim(['--itl-ms', '2']);
    gw = await mountGateway('express', {
      replicas: [sim.url],
      auth: {
        keys: [
          { key: 'sk-tera-single-lease', id: 'single', concurrency: 1, tokensPerSecond: 1_000_000 },
          { key: 'sk-tera-small-budget', id: 'small', concurrency: 10, tokensPerSecond: 100 },
          { key: 'sk-tera-burst-limit', id: 'burst', concurrency: 3, tokensPerSecond: 1_000_000 },
        ],
      },
      rateLimit: { burstSeconds: 1 },
      upstream: { health: { intervalMs: 200 }, forwardHeaders: ['x-sim-fault'], maxAttempts: 1 },
    });
    await gw.gateway.ready();
  });
  afterAll(async () => {
    await gw.close();
    await sim.kill();
  });
  const call = (key: string, body: object = {}, headers: Record<string, string> = {}, signal?: AbortSignal) =>
    fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...body }),
      ...(signal ? { signal } : {}),
    });
  const admitted = async (key: string) => {
    await new Promise((r) => setTimeout(r, 30));
    const res = await call(key);
    await res.text();
    return res.status;
  };

  it('a burst of 12 parallel streams on a key limited to 3: exactly 3 admitted, 9 refused, none hangs', async () => {
    await sim.configure({ itlMs: 20 });
    try {
      const responses = await Promise.all(Array.from({ length: 12 }, () => call('sk-tera-burst-limit', { stream: true })));
      const statuses = responses.map((r) => r.status).sort();
      await Promise.all(responses.map((r) => r.text()));
      expect(statuses.filter((s) => s === 200)).toHaveLength(3);
      expect(statuses.filter((s) => s === 429)).toHaveLength(9);
    } finally {
      await sim.configure({ itlMs: 2 });
    }
  });

  it('the lease comes back after success, upstream error, client abort and mid-stream failure', async () => {
    const key = 'sk-tera-single-lease';
    expect((await call(key)).status).toBe(200);
    expect(await admitted(key)).toBe(200);

    const failed = await call(key, {}, { 'x-sim-fault': '500' });
    expect(failed.status).toBe(500);
    expect(await admitted(key)).toBe(200);

    await sim.configure({ itlMs: 30 });
    const controller = new AbortController();
    const aborted = await call(key, { stream: true }, {}, controller.signal);
    const reader = aborted.body!.getReader();
    await reader.read();
    controller.abort();
    await reader.read().catch(() => undefined);
    await sim.configure({ itlMs: 2 });
    expect(await admitted(key)).toBe(200);

    const broken = await call(key, { stream: true }, { 'x-sim-fault': 'drop-mid-stream' });
    expect(await broken.text()).toContain('"error"');
    expect(await admitted(key)).toBe(200);
  });

  it('the token budget is enforced, reconciled with real usage, and Retry-After is honest', async () => {
    // 10 tokens/s with a 100-token bucket: refill is slow enough that timing noise cannot change the outcome.
    const slow = await mountGateway('express', {
      replicas: [sim.url],
      auth: { keys: [{ key: 'sk-tera-small-budget', id: 'small', concurrency: 10, tokensPerSecond: 10 }] },
      rateLimit: { burstSeconds: 10 },
      upstream: { health: { intervalMs: 200 } },
    });
    try {
      await slow.gateway.ready();
      const send = (maxTokens: number) =>
        fetch(`${slow.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer sk-tera-small-budget' },
          body: JSON.stringify({ model, seed: 1, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] }),
        });
      const first = await send(90);
      expect(first.status).toBe(200);
      const used = ((await first.json()) as { usage: { total_tokens: number } }).usage.total_tokens;
      // Admission charged the reservation; the bucket now holds 100 - (real usage) after reconciliation.
      expect(used).toBeGreaterThan(100);
      await new Promise((r) => setTimeout(r, 50));
      const second = await send(5);
      expect(second.status).toBe(429);
      const wait = Number(second.headers.get('retry-after'));
      const debt = used - 100;
      // The true wait for the debt left after a little refill, in whole seconds, never 0.
      expect(wait).toBeGreaterThanOrEqual(Math.max(1, Math.ceil((debt - 5) / 10)));
      expect(wait).toBeLessThanOrEqual(Math.max(1, Math.ceil(debt / 10)));
      await second.text();
      await new Promise((r) => setTimeout(r, wait * 1000));
      const third = await send(5);
      expect(third.status).toBe(200);
      await third.text();
    } finally {
      await slow.close();
    }
  });
});

describe.skipIf(!withRedis)('two gateway processes on one Redis', () => {
  it('share the concurrency limit of a key', async () => {
    const sim = await spawnSim(['--itl-ms', '25']);
    const keysFile = join(tmpdir(), `tera-keys-${process.pid}.json`);
    writeFileSync(
      keysFile,
      JSON.stringify([{ key: 'sk-tera-shared-key', id: 'shared', models: '*', concurrency: 2, tokensPerSecond: 1_000_000 }]),
    );
    const env = { UPSTREAM_URLS: sim.url, GATEWAY_KEYS: keysFile, REDIS_URL: redis!.url };
    const [a, b] = await Promise.all([spawnGateway(env), spawnGateway(env)]);
    try {
      for (const gw of [a, b]) {
        for (let i = 0; i < 100; i++) {
          if ((await fetch(`${gw.url}/health`)).status === 200) break;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      const send = (url: string) =>
        fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer sk-tera-shared-key' },
          body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
        });
      const responses = await Promise.all([send(a.url), send(a.url), send(b.url), send(b.url), send(a.url), send(b.url)]);
      const statuses = responses.map((r) => r.status);
      await Promise.all(responses.map((r) => r.text()));
      expect(statuses.filter((s) => s === 200)).toHaveLength(2);
      expect(statuses.filter((s) => s === 429)).toHaveLength(4);
      // The key never appears in the gateways' output.
      expect(a.output() + b.output()).not.toContain('sk-tera-shared-key');
      // Leases are released when each response ends, one Redis round trip after the client read its last byte.
      const direct = new Redis(redis!.url);
      let leases = -1;
      for (let i = 0; i < 40 && leases !== 0; i++) {
        leases = await direct.zcard('tera:rl:{shared}:leases');
        if (leases) await new Promise((r) => setTimeout(r, 50));
      }
      expect(leases).toBe(0);
      direct.disconnect();
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await sim.kill();
    }
  });

  it('Redis unreachable: fail open by default, fail closed by option; the gateway keeps serving', async () => {
    const sim = await spawnSim([]);
    const dead = new RedisStore({ url: 'redis://127.0.0.1:1' });
    const open = await mountGateway('express', {
      replicas: [sim.url],
      auth: { keys: [{ key: 'sk-tera-test-key-1' }] },
      rateLimit: { store: dead },
    });
    const closed = await mountGateway('express', {
      replicas: [sim.url],
      auth: { keys: [{ key: 'sk-tera-test-key-1' }] },
      rateLimit: { store: dead, onStoreError: 'closed' },
    });
    try {
      await open.gateway.ready();
      await closed.gateway.ready();
      await expect(open.client().chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] })).resolves.toBeTruthy();
      await expect(closed.client().chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
        status: 503,
      });
    } finally {
      await open.close();
      await closed.close();
      await dead.close();
      await sim.kill();
    }
  });
});
