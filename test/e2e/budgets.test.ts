import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { budgetPeriod, MemoryBudgetStore, type BudgetStore } from '@tera-gw/rate-limit';
import { RedisBudgetStore } from '@tera-gw/rate-limit-redis';
import type { UsageRecord } from '@tera-gw/telemetry';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { redisAvailable, spawnGateway, spawnSim, startRedis, type RedisProcess, type SimProcess } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

const model = 'openai/gpt-oss-20b';
const hasRedis = redisAvailable();
let sim: SimProcess;
let redis: RedisProcess | undefined;
beforeAll(async () => {
  sim = await spawnSim(['--itl-ms', '0']);
  if (hasRedis) redis = await startRedis();
});
afterAll(async () => {
  await sim.kill();
  await redis?.stop();
});

describe('budget periods (UTC calendar)', () => {
  it('day, ISO week, month and total, with their ends', () => {
    const at = Date.UTC(2026, 10, 28, 17, 30); // Saturday 28 November 2026
    expect(budgetPeriod('day', at)).toEqual({ id: 'day:2026-11-28', endsAt: Date.UTC(2026, 10, 29) });
    expect(budgetPeriod('week', at)).toEqual({ id: 'week:2026-11-23', endsAt: Date.UTC(2026, 10, 30) });
    expect(budgetPeriod('month', at)).toEqual({ id: 'month:2026-11', endsAt: Date.UTC(2026, 11, 1) });
    expect(budgetPeriod('month', Date.UTC(2026, 11, 31, 23))).toEqual({ id: 'month:2026-12', endsAt: Date.UTC(2027, 0, 1) });
    expect(budgetPeriod('total', at)).toEqual({ id: 'total', endsAt: undefined });
  });
});

const stores: Array<[string, () => BudgetStore]> = [
  ['memory', () => new MemoryBudgetStore()],
  ...(hasRedis
    ? [['redis', () => new RedisBudgetStore({ url: redis!.url, prefix: `t${Math.random()}:` })] as [string, () => BudgetStore]]
    : []),
];

describe.each(stores)('the %s budget store, on a clock of its own', (_name, makeStore) => {
  // The middleware computes periods on its clock (a fake one in tests, another host's in production);
  // the store keeps them on its own. Dates 70 years apart on either side must not matter.
  it.each([
    ['in the past', Date.UTC(1990, 0, 1)],
    ['in the future', Date.UTC(2099, 11, 31, 23)],
  ])('keeps a period whose dates are %s for as long as it lasts', async (_when, at) => {
    const store = makeStore();
    const period = budgetPeriod('day', at);
    const request = {
      period: period.id,
      limits: { usd: 1 },
      hold: { usd: 0.4, tokens: 10 },
      holdTtlMs: 60_000,
      keepForMs: period.endsAt! + 86_400_000 - at,
    };
    try {
      const first = await store.reserve('clock-key', request);
      expect(first.ok).toBe(true);
      if (!first.ok) return;
      await store.settle('clock-key', period.id, first.holdId, { usd: 0.6, tokens: 10 });
      const second = await store.reserve('clock-key', request);
      expect(second.spent.usd).toBeCloseTo(0.6, 9);
      expect(second.ok).toBe(true);
      if (!second.ok) return;
      await store.settle('clock-key', period.id, second.holdId, { usd: 0.6, tokens: 10 });
      const third = await store.reserve('clock-key', request);
      expect(third).toMatchObject({ ok: false, exceeded: 'usd' });
    } finally {
      await store.close?.();
    }
  });
});

describe.each(stores)('a budget through the gateway (%s store)', (_name, makeStore) => {
  let gw: Mounted;
  let store: BudgetStore;
  let clock = Date.UTC(2026, 10, 28, 23, 59, 0);
  const records: UsageRecord[] = [];
  beforeAll(async () => {
    store = makeStore();
    gw = await mountGateway('express', {
      replicas: [sim.url],
      auth: {
        keys: [
          { key: 'sk-tera-budget-usd-key', id: 'usd', budget: { usd: 0.0005, period: 'day' }, tokensPerSecond: 1e9, concurrency: 64 },
          { key: 'sk-tera-budget-tok-key', id: 'tok', budget: { tokens: 1500, period: 'total' }, tokensPerSecond: 1e9, concurrency: 64 },
          { key: 'sk-tera-no-budget-key', id: 'free' },
        ],
      },
      budgets: { store, now: () => clock },
      upstream: { health: false },
      onUsage: (r) => records.push(r),
    });
  });
  afterAll(async () => {
    await gw.close();
    await store.close?.();
  });

  const ask = (i: number) => ({ model, max_tokens: 200, messages: [{ role: 'user' as const, content: `Tell me about topic ${i}.` }] });

  it('spends down, says what is left, then refuses with insufficient_quota until the period resets', async () => {
    const client = gw.client('sk-tera-budget-usd-key');
    let refused: (InstanceType<typeof OpenAI.APIError> & { headers: Headers }) | undefined;
    const remaining: number[] = [];
    for (let i = 0; i < 60 && !refused; i++) {
      try {
        const { response } = await client.chat.completions.create(ask(i)).withResponse();
        remaining.push(Number(response.headers.get('x-tera-budget-remaining-usd')));
      } catch (err) {
        if (!(err instanceof OpenAI.APIError)) throw err;
        refused = err as InstanceType<typeof OpenAI.APIError> & { headers: Headers };
      }
    }
    expect(remaining[0]).toBe(0.0005);
    for (let i = 1; i < remaining.length; i++) expect(remaining[i]).toBeLessThan(remaining[i - 1]!);
    expect(refused?.status).toBe(429);
    expect(refused?.error).toMatchObject({ type: 'insufficient_quota', code: 'budget_exceeded' });
    expect(refused?.message).toMatch(/used its daily budget of \$0\.0005\. It resets at 2026-11-29T00:00:00\.000Z\./);
    // One minute to UTC midnight on the fake clock.
    expect(refused?.headers.get('retry-after')).toBe('60');
    // Spent at most one request's cost over the budget.
    const spent = records.filter((r) => r.keyId === 'usd').reduce((sum, r) => sum + r.costUSD!, 0);
    expect(spent).toBeGreaterThanOrEqual(0.0005 - 0.0001);
    expect(spent).toBeLessThan(0.0005 + 0.0001);
    // The next UTC day starts a fresh budget.
    clock += 61_000;
    await expect(client.chat.completions.create(ask(100))).resolves.toBeTruthy();
  });

  it('16 parallel requests overshoot by at most one request', async () => {
    const client = gw.client('sk-tera-budget-tok-key');
    const results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => client.chat.completions.create(ask(i))));
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    expect(ok).toBeGreaterThan(0);
    expect(ok).toBeLessThan(16);
    await until(() => records.filter((r) => r.keyId === 'tok').length === ok, 5000, 'the usage records');
    const spent = records.filter((r) => r.keyId === 'tok').reduce((sum, r) => sum + r.totalTokens!, 0);
    const largest = Math.max(...records.filter((r) => r.keyId === 'tok').map((r) => r.totalTokens!));
    expect(spent).toBeLessThanOrEqual(1500 + largest);
    for (const r of results.filter((r) => r.status === 'rejected'))
      expect((r.reason as InstanceType<typeof OpenAI.APIError>).status).toBe(429);
  });

  it('keys without a budget carry no budget header', async () => {
    const { response } = await gw.client('sk-tera-no-budget-key').chat.completions.create(ask(1)).withResponse();
    expect(response.headers.get('x-tera-budget-remaining-usd')).toBeNull();
  });
});

describe('aborted streams spend the budget', () => {
  let slow: SimProcess;
  let gw: Mounted;
  const records: UsageRecord[] = [];
  beforeAll(async () => {
    slow = await spawnSim(['--itl-ms', '5']);
    gw = await mountGateway('express', {
      replicas: [slow.url],
      auth: { keys: [{ key: 'sk-tera-budget-abort-key', id: 'aborter', budget: { tokens: 1200, period: 'total' }, tokensPerSecond: 1e9 }] },
      upstream: { health: false },
      onUsage: (r) => records.push(r),
    });
  });
  afterAll(async () => {
    await gw.close();
    await slow.kill();
  });

  it('a key that aborts every stream still spends its budget', async () => {
    let refused = false;
    for (let i = 0; i < 40 && !refused; i++) {
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: 'Bearer sk-tera-budget-abort-key', 'content-type': 'application/json' },
        body: JSON.stringify({ model, max_tokens: 200, stream: true, messages: [{ role: 'user', content: `Tell me about topic ${i}.` }] }),
      });
      if (res.status === 429) {
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('budget_exceeded');
        refused = true;
        break;
      }
      const reader = res.body!.getReader();
      await reader.read();
      await reader.cancel();
      await until(() => records.filter((r) => r.keyId === 'aborter').length === i + 1, 5000, 'the usage record');
    }
    const billed = records.filter((r) => r.keyId === 'aborter');
    expect(refused).toBe(true);
    for (const r of billed) expect(r.aborted).toBe(true);
    expect(billed.reduce((sum, r) => sum + r.totalTokens!, 0)).toBeGreaterThanOrEqual(1200);
  });
});

describe('prices', () => {
  it('one price list for the usage record, Prometheus and the budget', async () => {
    const records: UsageRecord[] = [];
    const gw = await mountGateway('express', {
      replicas: [sim.url],
      auth: { keys: [{ key: 'sk-tera-priced-key', id: 'priced', budget: { usd: 0.2, period: 'total' } }] },
      prices: { input: 1000, output: 2000 },
      upstream: { health: false },
      onUsage: (r) => records.push(r),
    });
    try {
      const client = gw.client('sk-tera-priced-key');
      const { data, response } = await client.chat.completions
        .create({ model, max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] })
        .withResponse();
      const expected = (data.usage!.prompt_tokens * 1000 + data.usage!.completion_tokens * 2000) / 1e6;
      await until(() => records.length === 1, 5000, 'the usage record');
      expect(records[0]!.costUSD).toBeCloseTo(expected, 10);
      expect(Number(response.headers.get('x-tera-budget-remaining-usd'))).toBe(0.2);
      const next = await client.chat.completions
        .create({ model, max_tokens: 50, messages: [{ role: 'user', content: 'again' }] })
        .withResponse();
      expect(Number(next.response.headers.get('x-tera-budget-remaining-usd'))).toBeCloseTo(0.2 - expected, 6);
    } finally {
      await gw.close();
    }
  });
});

describe.runIf(hasRedis)('two gateway processes on one Redis spend one budget', () => {
  it('alternating between hosts, the refusal comes after one budget, not two', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tera-budget-'));
    const keys = join(dir, 'keys.json');
    writeFileSync(
      keys,
      JSON.stringify([{ key: 'sk-tera-shared-budget', id: `shared-${Date.now()}`, budget: { tokens: 2500, period: 'total' } }]),
    );
    const hosts = await Promise.all([
      spawnGateway({ UPSTREAM_URLS: sim.url, GATEWAY_KEYS: keys, REDIS_URL: redis!.url }),
      spawnGateway({ UPSTREAM_URLS: sim.url, GATEWAY_KEYS: keys, REDIS_URL: redis!.url }),
    ]);
    try {
      for (const h of hosts) await until(async () => (await fetch(`${h.url}/health`)).status === 200, 15_000, 'ready');
      let answered = 0;
      let tokens = 0;
      let refusedBy: number | undefined;
      for (let i = 0; i < 40 && refusedBy === undefined; i++) {
        const host = hosts[i % 2]!;
        const client = new OpenAI({ baseURL: `${host.url}/v1`, apiKey: 'sk-tera-shared-budget', maxRetries: 0 });
        try {
          const answer = await client.chat.completions.create({ model, max_tokens: 150, messages: [{ role: 'user', content: `q${i}` }] });
          answered++;
          tokens += answer.usage!.total_tokens;
        } catch (err) {
          expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(429);
          refusedBy = i % 2;
        }
      }
      expect(refusedBy).toBeDefined();
      expect(answered).toBeGreaterThan(1);
      expect(tokens).toBeGreaterThanOrEqual(2500);
      expect(tokens).toBeLessThan(2500 + 600);
      // The other host refuses too: the budget is one.
      const other = hosts[(refusedBy! + 1) % 2]!;
      const res = await fetch(`${other.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: 'Bearer sk-tera-shared-budget', 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'one more' }] }),
      });
      expect(res.status).toBe(429);
    } finally {
      await Promise.all(hosts.map((h) => h.stop()));
    }
  });
});
