import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';

/** The Grafana dashboard in examples/ queries what the gateway serves: a renamed metric or label breaks this test, not a dashboard in production. */
const model = 'openai/gpt-oss-20b';
const USD = 'sk-tera-dash-usd-budget-key';
const TOKENS = 'sk-tera-dash-token-budget-key';
let sim: SimProcess;
let gw: Mounted;

interface Panel {
  title: string;
  targets: Array<{ expr: string }>;
}
const dashboard = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../examples/grafana/tera-gw-dashboard.json', import.meta.url)), 'utf8'),
) as { panels: Panel[] };

const PROMQL_WORDS = new Set([
  'sum',
  'rate',
  'increase',
  'histogram_quantile',
  'count',
  'avg',
  'max',
  'min',
  'by',
  'without',
  'on',
  'ignoring',
]);

/** The metric names an expression reads: what is left once matchers, ranges, groupings, strings and functions are taken out. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without)\s*\([^)]*\)/g, '')
    .replace(/"[^"]*"/g, '');
  return [...bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)].map((m) => m[0]).filter((w) => !PROMQL_WORDS.has(w));
}

/** The labels an expression groups or matches by. */
function labelNames(expr: string): string[] {
  const grouped = [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) => m[1]!.split(',').map((s) => s.trim()));
  const matched = [...expr.matchAll(/\{([^}]*)\}/g)].flatMap((m) =>
    [...m[1]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]!),
  );
  return [...grouped, ...matched].filter(Boolean);
}

beforeAll(async () => {
  sim = await spawnSim(['--ttft-ms', '2', '--itl-ms', '1']);
  gw = await mountGateway('express', {
    replicas: [sim.url],
    auth: {
      keys: [
        { key: USD, id: 'usd', budget: { usd: 5, period: 'day' } },
        { key: TOKENS, id: 'tokens', budget: { tokens: 1_000_000, period: 'month' } },
      ],
    },
    prometheus: { access: 'public' },
    upstream: { health: { intervalMs: 500 } },
  });
  await gw.gateway.ready();
  // Traffic that makes every family appear: chat, a stream, the Responses API, both budgets, an error.
  await gw.client(USD).chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 30 });
  const stream = await gw
    .client(USD)
    .chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 30, stream: true });
  for await (const _ of stream) void _;
  await gw.client(TOKENS).responses.create({ model, input: 'hi', max_output_tokens: 30 });
  await gw
    .client(TOKENS)
    .chat.completions.create({ model: 'gpt-nope', messages: [{ role: 'user', content: 'hi' }] })
    .catch(() => undefined);
});
afterAll(async () => {
  await gw?.close();
  await sim?.kill();
});

describe('the Grafana dashboard', () => {
  it('every query names a metric the gateway serves, with labels it carries', async () => {
    // Read line by line: each sample's own name (`_bucket`, `_sum`, `_count` of histograms included) and label names.
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    const served = new Map<string, Set<string>>();
    for (const line of text.split('\n')) {
      const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? /.exec(line);
      if (!sample) continue;
      const labels = served.get(sample[1]!) ?? new Set<string>();
      for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(m[1]!);
      served.set(sample[1]!, labels);
    }
    const queries = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: t.expr })));
    expect(queries.length).toBeGreaterThanOrEqual(10);
    for (const { panel, expr } of queries) {
      const metrics = metricNames(expr);
      expect(metrics.length, `${panel}: ${expr}`).toBeGreaterThan(0);
      for (const metric of metrics) {
        expect(served.has(metric), `${panel}: ${metric} is not served`).toBe(true);
        const carried = served.get(metric)!;
        for (const label of labelNames(expr)) expect(carried.has(label), `${panel}: ${metric} has no label ${label}`).toBe(true);
      }
    }
  });
});
