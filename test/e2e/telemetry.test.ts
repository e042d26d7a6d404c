import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { SpanKind, SpanStatusCode, context as otelContext, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import express from 'express';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGateway, type Gateway } from '@tera-gw/gateway';
import type { UsageRecord } from '@tera-gw/telemetry';
import { spawnSim, type SimProcess } from '../helpers/processes.js';

const model = 'openai/gpt-oss-20b';
const spans = new InMemorySpanExporter();
const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });
const tracer = tracerProvider.getTracer('test');
const reader = new PeriodicExportingMetricReader({
  exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
  exportIntervalMillis: 3_600_000,
});
const meterProvider = new MeterProvider({ readers: [reader] });
const contextManager = new AsyncLocalStorageContextManager().enable();
otelContext.setGlobalContextManager(contextManager);

let sims: SimProcess[];
let gateway: Gateway;
let url: string;
let closeServer: () => Promise<void>;
const usage: UsageRecord[] = [];

beforeAll(async () => {
  sims = await Promise.all([spawnSim(['--itl-ms', '5']), spawnSim(['--itl-ms', '5'])]);
  gateway = createGateway({
    replicas: sims.map((s) => s.url),
    auth: { keys: [{ key: 'sk-tera-telemetry', id: 'team-otel', concurrency: 1 }] },
    telemetry: { tracer, meter: meterProvider.getMeter('test') },
    onUsage: (r) => void usage.push(r),
    upstream: { health: { intervalMs: 100 }, breaker: { consecutiveFailures: 100 }, routing: 'least-request' },
  });
  const app = express();
  // The app's own server span, as an HTTP instrumentation would make it.
  app.use((req, res, next) => {
    const span = tracer.startSpan(`${req.method} ${req.path}`, { kind: SpanKind.SERVER });
    res.on('close', () => span.end());
    otelContext.with(trace.setSpan(otelContext.active(), span), next);
  });
  app.use('/v1', gateway);
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  closeServer = async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  await gateway.ready();
  await new Promise((r) => setTimeout(r, 300));
});
afterAll(async () => {
  await gateway.close();
  await closeServer();
  await Promise.all(sims.map((s) => s.kill()));
  contextManager.disable();
});
beforeEach(() => {
  spans.reset();
  usage.length = 0;
});

const client = new OpenAI({ baseURL: 'http://placeholder/v1', apiKey: 'sk-tera-telemetry', maxRetries: 0 });
const c = () => client.withOptions({ baseURL: `${url}/v1` });

async function settled(): Promise<ReadableSpan[]> {
  for (let i = 0; i < 40; i++) {
    if (
      spans.getFinishedSpans().some((s) => s.name.startsWith('POST') && s.ended) &&
      spans.getFinishedSpans().some((s) => s.name.startsWith('chat ') && s.kind === SpanKind.INTERNAL)
    )
      break;
    await new Promise((r) => setTimeout(r, 25));
  }
  await new Promise((r) => setTimeout(r, 20));
  return spans.getFinishedSpans();
}
const chatSpan = (list: ReadableSpan[]) => list.find((s) => s.name === `chat ${model}` && s.kind === SpanKind.INTERNAL)!;
const attemptSpans = (list: ReadableSpan[]) => list.filter((s) => s.kind === SpanKind.CLIENT);

describe('spans', () => {
  it('a plain completion: one chat span under the server span, GenAI attributes, one attempt span, a usage record with cost', async () => {
    const res = await c().chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'hi' }],
      temperature: 0.5,
      top_p: 0.9,
      seed: 3,
      max_tokens: 200,
    });
    const list = await settled();
    const chat = chatSpan(list);
    const server = list.find((s) => s.kind === SpanKind.SERVER)!;
    expect(chat.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
    expect(chat.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'vllm',
      'gen_ai.request.model': model,
      'gen_ai.request.max_tokens': 200,
      'gen_ai.request.temperature': 0.5,
      'gen_ai.request.top_p': 0.9,
      'gen_ai.request.seed': 3,
      'gen_ai.response.id': res.id,
      'gen_ai.response.model': model,
      'gen_ai.response.finish_reasons': ['stop'],
      'gen_ai.usage.input_tokens': res.usage!.prompt_tokens,
      'gen_ai.usage.output_tokens': res.usage!.completion_tokens,
      'tera.key_id': 'team-otel',
      'tera.attempts': 1,
    });
    expect(JSON.stringify(chat.attributes)).not.toContain('sk-tera-telemetry');
    expect(chat.attributes['gen_ai.input.messages']).toBeUndefined();
    const [attempt] = attemptSpans(list);
    expect(attempt!.parentSpanContext?.spanId).toBe(chat.spanContext().spanId);
    expect(attempt!.attributes['server.address']).toBe('127.0.0.1');
    expect(sims.map((s) => s.port)).toContain(attempt!.attributes['server.port']);
    expect(usage).toHaveLength(1);
    expect(usage[0]).toMatchObject({
      keyId: 'team-otel',
      promptTokens: res.usage!.prompt_tokens,
      completionTokens: res.usage!.completion_tokens,
      attempts: 1,
      aborted: false,
      finishReason: 'stop',
    });
    expect(usage[0]!.costUSD).toBeCloseTo((res.usage!.prompt_tokens * 0.07 + res.usage!.completion_tokens * 0.25) / 1e6, 12);
  });

  it('a stream: usage from the upstream even when the caller did not ask for it', async () => {
    const stream = await c().chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], stream: true });
    for await (const _ of stream) void _;
    const chat = chatSpan(await settled());
    expect(chat.attributes['tera.stream']).toBe(true);
    expect(chat.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
    expect(usage[0]!.stream).toBe(true);
    expect(usage[0]!.totalTokens).toBeGreaterThan(0);
  });

  it('a tool call: names and validity on the span', async () => {
    const tools = [
      {
        type: 'function' as const,
        function: {
          name: 'get_weather',
          description: 'weather in a city',
          parameters: { type: 'object', properties: { city: { type: 'string' } } },
        },
      },
    ];
    await c()
      .chat.completions.stream({ model, messages: [{ role: 'user', content: 'weather in Paris?' }], tools })
      .finalChatCompletion();
    const chat = chatSpan(await settled());
    expect(chat.attributes).toMatchObject({
      'tera.tool_calls': 1,
      'tera.tool_calls.invalid': 0,
      'tera.tool_calls.names': ['get_weather'],
      'gen_ai.response.finish_reasons': ['tool_calls'],
    });
  });

  it('a retried request: two attempt spans, the first in error, a retry event; recorded once', async () => {
    await sims[0]!.configure({ failRate: 1 });
    try {
      let list: ReadableSpan[] = [];
      for (let i = 0; i < 20; i++) {
        spans.reset();
        usage.length = 0;
        await c().chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });
        list = await settled();
        if (attemptSpans(list).length === 2) break;
      }
      const attempts = attemptSpans(list).sort(
        (a, b) => (a.attributes['tera.attempt'] as number) - (b.attributes['tera.attempt'] as number),
      );
      expect(attempts).toHaveLength(2);
      expect(attempts[0]!.status.code).toBe(SpanStatusCode.ERROR);
      expect(attempts[0]!.attributes['http.response.status_code']).toBe(500);
      expect(attempts[1]!.status.code).toBe(SpanStatusCode.UNSET);
      const chat = chatSpan(list);
      expect(chat.events.map((e) => e.name)).toContain('tera.retry');
      expect(chat.status.code).toBe(SpanStatusCode.UNSET);
      expect(usage).toHaveLength(1);
      expect(usage[0]!.attempts).toBe(2);
    } finally {
      await sims[0]!.configure({ failRate: 0 });
    }
  });

  it('error.type is the one the answer carried (404 model_not_found), not guessed from the status', async () => {
    await expect(c().chat.completions.create({ model: 'gpt-9', messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
      status: 404,
    });
    const list = await settled();
    const span = list.filter((s) => s.kind === SpanKind.INTERNAL).find((s) => s.attributes['http.response.status_code'] === 404)!;
    expect(span.attributes['error.type']).toBe('model_not_found');
  });

  it('a 429: a rate-limit event and error status; no usage record', async () => {
    const first = await c().chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], stream: true });
    await expect(c().chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
      status: 429,
    });
    for await (const _ of first) void _;
    await new Promise((r) => setTimeout(r, 50));
    const list = await settled();
    const limited = list.filter((s) => s.kind === SpanKind.INTERNAL).find((s) => s.attributes['http.response.status_code'] === 429)!;
    expect(limited.status.code).toBe(SpanStatusCode.ERROR);
    expect(limited.attributes['error.type']).toBe('rate_limit_error');
    expect(limited.events.find((e) => e.name === 'tera.rate_limit.rejected')?.attributes).toMatchObject({
      'tera.rate_limit.reason': 'concurrency',
    });
    expect(usage).toHaveLength(1);
  });

  it('a client abort: the span ends, marked, with an abort event; usage recorded once, marked aborted', async () => {
    await Promise.all(sims.map((s) => s.configure({ itlMs: 40 })));
    try {
      const controller = new AbortController();
      const stream = await c().chat.completions.create(
        { model, messages: [{ role: 'user', content: 'hi' }], stream: true },
        { signal: controller.signal },
      );
      let n = 0;
      await (async () => {
        for await (const _ of stream) if (++n === 3) controller.abort();
      })().catch(() => undefined);
      const chat = chatSpan(await settled());
      expect(chat.attributes['tera.client_aborted']).toBe(true);
      expect(chat.events.map((e) => e.name)).toContain('tera.client_abort');
      expect(usage).toHaveLength(1);
      expect(usage[0]!.aborted).toBe(true);
    } finally {
      await Promise.all(sims.map((s) => s.configure({ itlMs: 5 })));
    }
  });
});

describe('metrics', () => {
  it('token usage by type, durations, time to first token, requests by status, replica readiness', async () => {
    // Its own 429 (the key allows one request in flight), so the test stands alone in any order.
    const before = await reader.collect();
    const limitedBefore = before.resourceMetrics.scopeMetrics
      .flatMap((sm) => sm.metrics)
      .find((m) => m.descriptor.name === 'tera.requests')
      ?.dataPoints.filter((p) => p.attributes['http.response.status_code'] === 429)
      .reduce((sum, p) => sum + (p.value as number), 0);
    const first = await c().chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], stream: true });
    await expect(c().chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
      status: 429,
    });
    for await (const _ of first) void _;
    await new Promise((r) => setTimeout(r, 50));
    await c().chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });
    const { resourceMetrics } = await reader.collect();
    const all = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
    const byName = (name: string) => all.find((m) => m.descriptor.name === name);
    const tokens = byName('gen_ai.client.token.usage')!;
    expect(new Set(tokens.dataPoints.map((p) => p.attributes['gen_ai.token.type']))).toEqual(new Set(['input', 'output']));
    expect(byName('gen_ai.client.operation.duration')!.descriptor.unit).toBe('s');
    expect(byName('gen_ai.server.time_to_first_token')!.dataPoints.length).toBeGreaterThan(0);
    expect(byName('gen_ai.server.time_per_output_token')!.dataPoints.length).toBeGreaterThan(0);
    const requests = byName('tera.requests')!;
    const limited = requests.dataPoints.filter(
      (p) => p.attributes['http.response.status_code'] === 429 && p.attributes['error.type'] === 'rate_limit_error',
    );
    expect(limited.reduce((sum, p) => sum + (p.value as number), 0)).toBe((limitedBefore ?? 0) + 1);
    const ready = byName('tera.replica.ready')!;
    expect(ready.dataPoints.map((p) => p.value)).toEqual([1, 1]);
    const inFlight = byName('tera.requests.in_flight')!;
    expect(inFlight.dataPoints.reduce((sum, p) => sum + (p.value as number), 0)).toBe(0);
  });
});
