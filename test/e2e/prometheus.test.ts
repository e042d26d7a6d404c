import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UsageRecord } from '@tera-gw/telemetry';
import { mountGateway, type Framework, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';
import { sleep, until } from '../helpers/wait.js';

/** `/metrics` read by a real Prometheus text parser; the per-key counters agree with the usage records to the token. */
const model = 'openai/gpt-oss-20b';
const TENANT = 'sk-tera-prom-tenant-key';
const OPERATOR = 'sk-tera-prom-operator-key';
const TOKEN_BUDGET = 'sk-tera-prom-token-budget-key';
let sim: SimProcess;
beforeAll(async () => {
  sim = await spawnSim(['--itl-ms', '2']);
});
afterAll(() => sim.kill());

type Family = ReturnType<typeof parsePrometheusTextFormat>[number];
/** The sum over every series of `name` carrying these labels (others, e.g. an aborted flag, split series). */
const value = (families: Family[], name: string, labels: Record<string, string>): number => {
  const samples = families
    .find((f) => f.name === name)
    ?.metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return samples?.length ? samples.reduce((sum, m) => sum + Number(m.value), 0) : NaN;
};

describe.each<Framework>(['express', 'koa'])('Prometheus scrape (%s)', (framework) => {
  let gw: Mounted;
  let metricsUrl: string;
  const records: UsageRecord[] = [];
  beforeAll(async () => {
    gw = await mountGateway(framework, {
      replicas: [sim.url],
      auth: {
        keys: [
          { key: TENANT, id: 'tenant', budget: { usd: 2, period: 'day' } },
          { key: OPERATOR, id: 'ops', operator: true },
          { key: TOKEN_BUDGET, id: 'tokens', budget: { tokens: 100_000, period: 'month' } },
        ],
      },
      upstream: { health: false },
      onUsage: (r) => records.push(r),
    });
    metricsUrl = `${gw.url}/metrics`;
  });
  afterAll(() => gw.close());

  const scrape = async (key?: string) => fetch(metricsUrl, key ? { headers: { authorization: `Bearer ${key}` } } : {});

  it('per-key tokens, cost, requests and budget match the usage records, aborted streams included', async () => {
    const client = gw.client(TENANT);
    await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });
    const stream = await client.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: 'stream' }] });
    for await (const _ of stream) void _;
    // An aborted stream, mid-reasoning.
    const controller = new AbortController();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TENANT}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, stream: true, max_tokens: 300, messages: [{ role: 'user', content: 'abort me' }] }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    for (let i = 0; i < 5; i++) await reader.read();
    controller.abort();
    await until(() => records.filter((r) => r.keyId === 'tenant').length === 3, 5000, 'three usage records');
    await sleep(50);

    const response = await scrape(OPERATOR);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    const families = parsePrometheusTextFormat(await response.text());
    const mine = records.filter((r) => r.keyId === 'tenant');
    expect(mine.some((r) => r.aborted)).toBe(true);
    const sum = (f: (r: UsageRecord) => number) => mine.reduce((s, r) => s + f(r), 0);
    expect(value(families, 'tera_usage_tokens_total', { key_id: 'tenant', token_type: 'input' })).toBe(sum((r) => r.promptTokens!));
    expect(value(families, 'tera_usage_tokens_total', { key_id: 'tenant', token_type: 'output' })).toBe(sum((r) => r.completionTokens!));
    expect(value(families, 'tera_usage_tokens_total', { key_id: 'tenant', token_type: 'reasoning' })).toBe(
      sum((r) => r.reasoningTokens ?? 0),
    );
    expect(value(families, 'tera_usage_cost_usd_total', { key_id: 'tenant' })).toBeCloseTo(
      sum((r) => r.costUSD!),
      10,
    );
    expect(value(families, 'tera_requests_total', { key_id: 'tenant', status: '200' })).toBe(3);
    expect(value(families, 'tera_budget_remaining_usd', { key_id: 'tenant' })).toBeCloseTo(2 - sum((r) => r.costUSD!), 8);
    expect(families.find((f) => f.name === 'tera_usage_tokens_total')?.type).toBe('COUNTER');
    expect(families.find((f) => f.name === 'tera_budget_remaining_usd')?.type).toBe('GAUGE');
  });

  it('the README sample is a real scrape: each documented series has exactly the labels served', async () => {
    const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
    const sample = /<!-- prometheus-sample -->\s*```text\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(sample, 'the README has a sample scrape marked <!-- prometheus-sample -->').toBeDefined();
    const documented = parsePrometheusTextFormat(sample!);
    // What the sample shows: Responses traffic, an unknown model, a token budget.
    await gw.client(TOKEN_BUDGET).responses.create({ model: 'openai/gpt-oss-20b', input: 'hi', max_output_tokens: 16 });
    await gw
      .client(TENANT)
      .chat.completions.create({ model: 'gpt-nope', messages: [{ role: 'user', content: 'hi' }] })
      .catch(() => undefined);
    const real = parsePrometheusTextFormat(await (await scrape(OPERATOR)).text());
    const labelNames = (m: { labels?: Record<string, string> }) =>
      Object.keys(m.labels ?? {})
        .sort()
        .join(',');
    for (const family of documented) {
      const found = real.find((f) => f.name === family.name);
      expect(found, family.name).toBeDefined();
      expect(found!.type).toBe(family.type);
      const served = new Set(found!.metrics.map(labelNames));
      for (const m of family.metrics) expect([...served], `${family.name} with labels ${labelNames(m)}`).toContain(labelNames(m));
    }
    const target = real.find((f) => f.name === 'target_info')!.metrics[0]!.labels!;
    expect(target.service_name).toBe('tera-gw');
    const requests = real.find((f) => f.name === 'tera_requests_total')!.metrics.map((m) => m.labels!);
    expect(requests).toContainEqual(expect.objectContaining({ gen_ai_operation_name: 'responses', status: '200' }));
    expect(requests).toContainEqual(
      expect.objectContaining({ gen_ai_request_model: 'gpt-nope', error_type: 'model_not_found', status: '404' }),
    );
  });

  it('tenants cannot read every key’s usage: operator keys only', async () => {
    expect((await scrape()).status).toBe(401);
    const tenant = await scrape(TENANT);
    expect(tenant.status).toBe(403);
    expect(((await tenant.json()) as { error: { type: string } }).error.type).toBe('permission_error');
  });
});
