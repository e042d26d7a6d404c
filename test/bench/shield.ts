import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { compileSchema, stepBudget } from '@tera-gw/core';
import { createGateway, type Gateway } from '@tera-gw/gateway';
import { startSimulator } from '@tera-gw/vllm-sim';
import { median } from './harness.js';

/**
 * What hiding gpt-oss's failures costs: the latency of a request whose first attempt failed
 * (Harmony error as a 500, as an SSE error event after the role chunk, an empty completion)
 * against a clean one, through the same gateway and simulator in one run; and the CPU of the
 * strict structured-output check per request, on and off. Ratios, since machines are noisy.
 */
const model = 'openai/gpt-oss-20b';
const KEY = 'sk-tera-bench-shield-key';
const N = Number(process.env.BENCH_REQUESTS ?? 200);
const ttftMs = Number(process.env.SIM_TTFT_MS ?? 20);

const sim = await startSimulator({ ttftMs, itlMs: 0 });
async function mount(structuredOutput: boolean): Promise<{ url: string; gateway: Gateway; server: Server }> {
  const gateway = createGateway({
    replicas: [sim.url],
    auth: { keys: [{ key: KEY, id: 'bench', concurrency: 64, tokensPerSecond: 1e9 }] },
    telemetry: false,
    upstream: { health: false, forwardHeaders: ['x-sim-fault', 'x-sim-fault-times'], outputChecks: { structuredOutput } },
  });
  const app = express();
  app.use('/v1', gateway);
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`, gateway, server };
}

async function timed(url: string, body: object, headers: Record<string, string> = {}): Promise<number> {
  const started = performance.now();
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== 200 || text.includes('"error"')) throw new Error(`unexpected answer ${res.status}: ${text.slice(0, 200)}`);
  return performance.now() - started;
}

const ask = (i: number, extra: object = {}) => ({
  model,
  messages: [{ role: 'user', content: `question ${i}` }],
  max_tokens: 64,
  seed: i,
  ...extra,
});
const on = await mount(true);

console.log(`retried vs clean, ${N} requests each, interleaved, simulator TTFT ${ttftMs} ms (median ms)`);
const cases: Array<[string, object, Record<string, string>]> = [
  ['clean', {}, {}],
  ['harmony-500 once', {}, { 'x-sim-fault': 'harmony-500', 'x-sim-fault-times': '1' }],
  ['empty completion once', {}, { 'x-sim-fault': 'empty-completion', 'x-sim-fault-times': '1' }],
  ['clean, streamed', { stream: true }, {}],
  ['SSE error before text once, streamed', { stream: true }, { 'x-sim-fault': 'harmony-sse-before-text', 'x-sim-fault-times': '1' }],
];
const latency: Record<string, number[]> = {};
for (let i = 0; i < N; i++)
  for (const [name, extra, headers] of cases) (latency[name] ??= []).push(await timed(on.url, ask(i, extra), headers));
const clean = median(latency.clean!);
const cleanStream = median(latency['clean, streamed']!);
for (const [name, extra] of cases) {
  const m = median(latency[name]!);
  const base = 'stream' in extra ? cleanStream : clean;
  console.log(`  ${name.padEnd(38)} ${m.toFixed(1).padStart(7)} ms   x${(m / base).toFixed(2)}`);
}

const schema = {
  type: 'json_schema',
  json_schema: {
    name: 'answer',
    strict: true,
    schema: {
      type: 'object',
      properties: {
        answer: { type: 'string' },
        confidence: { type: 'number', minimum: 0, maximum: 1 },
        tags: { type: 'array', items: { type: 'string' } },
      },
      required: ['answer'],
      additionalProperties: false,
    },
  },
};
const off = await mount(false);
const cpu: Record<string, number[]> = {};
for (let round = 0; round < 5; round++)
  for (const [name, target] of [
    ['strict check on', on],
    ['strict check off', off],
  ] as const) {
    const before = process.cpuUsage();
    for (let i = 0; i < N / 5; i++) await timed(target.url, ask(i, { response_format: schema }));
    const used = process.cpuUsage(before);
    (cpu[name] ??= []).push((used.user + used.system) / (N / 5));
  }
const checkOn = median(cpu['strict check on']!);
const checkOff = median(cpu['strict check off']!);
console.log(`\nstrict json_schema answers, CPU per request of this process (gateway, simulator and client), median of 5 rounds`);
console.log(
  `  check on  ${checkOn.toFixed(0).padStart(6)} us\n  check off ${checkOff.toFixed(0).padStart(6)} us   on/off x${(checkOn / checkOff).toFixed(3)}`,
);

// The check alone, as the adapter runs it on a final answer: parse the content, check it against the compiled schema.
const compiled = compileSchema(schema.json_schema.schema);
const content = JSON.stringify({
  answer: 'Paris is the capital of France. '.repeat(8),
  confidence: 0.93,
  tags: ['geography', 'europe', 'capitals'],
});
for (let i = 0; i < 20_000; i++) compiled.check(JSON.parse(content), stepBudget());
const started = process.cpuUsage();
const checks = 200_000;
for (let i = 0; i < checks; i++) compiled.check(JSON.parse(content), stepBudget());
const used = process.cpuUsage(started);
console.log(`  the check alone: ${(((used.user + used.system) / checks) * 1000).toFixed(0)} ns per answer of ${content.length} bytes`);

for (const target of [on, off]) {
  await target.gateway.close();
  target.server.closeAllConnections();
  target.server.close();
}
await sim.close();
