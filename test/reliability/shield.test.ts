import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import express from 'express';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway, type GatewayOptions } from '@tera-gw/gateway';
import { startSimulator, type SimulatorHandle } from '@tera-gw/vllm-sim';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnGateway, spawnSim } from '../helpers/processes.js';
import { sseData } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';

/**
 * gpt-oss failures vLLM lets through (Harmony parser errors in every framing, empty
 * completions, broken structured output), driven on the simulator per request with
 * `x-sim-fault` (and `x-sim-fault-times: 1`: only the first attempt fails, as sampling would).
 */
const model = 'openai/gpt-oss-20b';
const KEY = 'sk-tera-shield-test-key';
const spans = new InMemorySpanExporter();
const tracer = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] }).getTracer('shield');

interface Setup {
  sims: SimulatorHandle[];
  gateway: Gateway;
  server: Server;
  base: string;
  client: OpenAI;
  attempts: string[];
}

async function setup(replicaCount: number, extra: Partial<GatewayOptions> = {}, maxModelLen?: number): Promise<Setup> {
  const sims = await Promise.all(
    Array.from({ length: replicaCount }, () => startSimulator({ itlMs: 0, ...(maxModelLen ? { maxModelLen } : {}) })),
  );
  const gateway = createGateway({
    replicas: sims.map((s) => s.url),
    auth: { keys: [{ key: KEY, id: 'shield' }] },
    telemetry: { tracer },
    upstream: {
      health: false,
      forwardHeaders: ['x-sim-fault', 'x-sim-fault-times'],
      breaker: { consecutiveFailures: 2 },
      ...extra.upstream,
    },
  });
  const app = express();
  app.use('/v1', gateway);
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  const attempts: string[] = [];
  gateway.upstream.events.on('attempt', (_ctx, replica) => attempts.push(replica));
  return { sims, gateway, server, base, client: new OpenAI({ baseURL: base, apiKey: KEY, maxRetries: 0 }), attempts };
}

async function teardown(s: Setup) {
  await s.gateway.close();
  s.server.closeAllConnections();
  await new Promise((r) => s.server.close(r));
  await Promise.all(s.sims.map((sim) => sim.close()));
}

const faultHeaders = (fault: string, times?: number) => ({
  'x-sim-fault': fault,
  ...(times ? { 'x-sim-fault-times': String(times) } : {}),
});
const ask = { model, messages: [{ role: 'user' as const, content: 'What is 2+2?' }], seed: 7 };

/** Reads a stream with the SDK: the chunks, and how many carried the role. */
async function readStream(client: OpenAI, headers: Record<string, string>, body: Partial<OpenAI.ChatCompletionCreateParamsStreaming> = {}) {
  const stream = await client.chat.completions.create({ ...ask, ...body, stream: true }, { headers });
  const chunks: OpenAI.ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  const text = (key: 'content' | 'reasoning') =>
    chunks.map((c) => (c.choices[0]?.delta as Record<string, string | undefined> | undefined)?.[key] ?? '').join('');
  return {
    chunks,
    roles: chunks.filter((c) => c.choices[0]?.delta.role).length,
    content: text('content'),
    reasoning: text('reasoning'),
    finish: chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean),
  };
}

describe('one replica: each model-output failure is retried on it and the caller gets a normal answer', () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup(1);
  });
  afterAll(() => teardown(s));

  const clean = () => s.client.chat.completions.create(ask);

  it.each(['harmony-500', 'harmony-400', 'harmony-200', 'harmony-sse-before-text', 'empty-completion'])(
    '%s, non-streaming',
    async (fault) => {
      const expected = await clean();
      s.attempts.length = 0;
      spans.reset();
      const answer = await s.client.chat.completions.create(ask, { headers: faultHeaders(fault, 1) });
      expect(answer.choices[0]!.message.content).toBe(expected.choices[0]!.message.content);
      expect(answer.choices[0]!.finish_reason).toBe('stop');
      expect(s.attempts).toEqual([s.sims[0]!.url, s.sims[0]!.url]);
      const kind = fault === 'empty-completion' ? 'empty_completion' : 'harmony_error';
      const repair = spans.getFinishedSpans().flatMap((span) => span.events.filter((e) => e.name === 'tera.repair'));
      expect(repair.map((e) => e.attributes)).toEqual([{ 'tera.repair.kind': `retry.${kind}`, 'tera.repair.count': 1 }]);
      expect(s.gateway.upstream.replicas()[0]!.breaker).toBe('closed');
    },
  );

  it.each(['harmony-500', 'harmony-400', 'harmony-200', 'harmony-sse-before-text', 'empty-completion'])(
    '%s, streaming: one role chunk, the whole answer, a normal finish',
    async (fault) => {
      const expected = await readStream(s.client, {});
      s.attempts.length = 0;
      const got = await readStream(s.client, faultHeaders(fault, 1));
      expect(got.roles).toBe(1);
      expect(got.content).toBe(expected.content);
      expect(got.reasoning).toBe(expected.reasoning);
      expect(got.finish).toEqual(['stop']);
      expect(s.attempts).toHaveLength(2);
    },
  );

  it('the role chunk already went out when the first attempt failed: the retry continues the same stream', async () => {
    const res = await fetch(`${s.base}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...faultHeaders('harmony-sse-before-text', 1) },
      body: JSON.stringify({ ...ask, stream: true }),
    });
    const events = sseData(await res.text());
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as OpenAI.ChatCompletionChunk);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.slice(1).some((c) => c.choices[0]?.delta.role)).toBe(false);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(events.some((e) => e.includes('"error"'))).toBe(false);
  });

  it('a replica that always fails: one clean 500 after the attempt budget, never the replica text; breaker untouched', async () => {
    s.attempts.length = 0;
    const res = await fetch(`${s.base}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...faultHeaders('harmony-500') },
      body: JSON.stringify(ask),
    });
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: { type: string; code: string; message: string } };
    expect(body.error).toMatchObject({ type: 'server_error', code: 'harmony_error' });
    expect(body.error.message).toBe(
      'The model produced output that vLLM could not parse (a Harmony format error) on 3 attempts. Retry the request; if it persists, report the X-Tera-Request-ID of this response.',
    );
    expect(body.error.message).not.toMatch(/HarmonyError|200002/);
    expect(s.attempts).toHaveLength(3);
    expect(s.gateway.upstream.replicas()[0]!.breaker).toBe('closed');
  });

  it('the same when streaming: a status failure before any byte is still a clean 500', async () => {
    await expect(readStream(s.client, faultHeaders('harmony-400'))).rejects.toMatchObject({ status: 500, code: 'harmony_error' });
  });

  it('after text went out, a Harmony error event ends the stream with one error event (not retried)', async () => {
    s.attempts.length = 0;
    const res = await fetch(`${s.base}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...faultHeaders('harmony-sse-after-text', 1) },
      body: JSON.stringify({ ...ask, stream: true }),
    });
    const events = sseData(await res.text());
    const last = JSON.parse(events.at(-1)!) as { error: { code: string; message: string } };
    expect(last.error.code).toBe('harmony_error');
    expect(last.error.message).toBe('The model produced output that vLLM could not parse (a Harmony format error). Retry the request.');
    expect(s.attempts).toHaveLength(1);
  });

  describe('strict structured output', () => {
    const format = {
      type: 'json_schema' as const,
      json_schema: {
        name: 'answer',
        strict: true,
        schema: { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'], additionalProperties: false },
      },
    };

    it('a non-streamed answer that breaks the schema is retried; the caller gets one that fits', async () => {
      s.attempts.length = 0;
      const answer = await s.client.chat.completions.create(
        { ...ask, response_format: format },
        { headers: faultHeaders('schema-break', 1) },
      );
      expect(JSON.parse(answer.choices[0]!.message.content!)).toHaveProperty('answer');
      expect(s.attempts).toHaveLength(2);
    });

    it('json_object content that is not JSON is retried', async () => {
      s.attempts.length = 0;
      const answer = await s.client.chat.completions.create(
        { ...ask, response_format: { type: 'json_object' } },
        { headers: faultHeaders('invalid-json', 1) },
      );
      expect(() => JSON.parse(answer.choices[0]!.message.content!) as unknown).not.toThrow();
      expect(s.attempts).toHaveLength(2);
    });

    it('a streamed answer that breaks the schema ends with an error event instead of a normal finish', async () => {
      const res = await fetch(`${s.base}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...faultHeaders('schema-break') },
        body: JSON.stringify({ ...ask, stream: true, response_format: format }),
      });
      const events = sseData(await res.text());
      const last = JSON.parse(events.at(-1)!) as { error: { code: string; message: string } };
      expect(last.error.code).toBe('schema_violation');
      expect(events.some((e) => e.includes('"finish_reason":"stop"'))).toBe(false);
      expect(events).not.toContain('[DONE]');
    });

    it('an answer that fits is untouched, streamed or not', async () => {
      const answer = await s.client.chat.completions.create({ ...ask, response_format: format });
      expect(JSON.parse(answer.choices[0]!.message.content!)).toHaveProperty('answer');
      const streamed = await readStream(s.client, {}, { response_format: format });
      expect(JSON.parse(streamed.content)).toHaveProperty('answer');
      expect(streamed.finish).toEqual(['stop']);
    });
  });
});

describe("caller errors are the caller's", () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup(2, {}, 2000);
  });
  afterAll(() => teardown(s));

  it('a replica context-length 400 is answered at once and never retried', async () => {
    s.attempts.length = 0;
    const res = await fetch(`${s.base}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      // Far under the gateway's 131,072-token context, over these replicas' 2,000.
      body: JSON.stringify({ ...ask, max_tokens: 100, messages: [{ role: 'user', content: 'word '.repeat(3000) }] }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('context_length_exceeded');
    expect(s.attempts).toHaveLength(1);
  });
});

describe('several replicas', () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup(2);
  });
  afterAll(() => teardown(s));

  it('a model-output failure moves to another replica, and no breaker counts it', async () => {
    // One replica breaks every Harmony parse, the other none.
    s.sims[0]!.configure({ faultRates: { 'harmony-500': 1 } });
    try {
      let movedAway = 0;
      for (let i = 0; i < 8; i++) {
        s.attempts.length = 0;
        const answer = await s.client.chat.completions.create({ ...ask, messages: [{ role: 'user', content: `question ${i}` }] });
        expect(answer.choices[0]!.finish_reason).toBe('stop');
        expect(s.attempts.at(-1)).toBe(s.sims[1]!.url);
        if (s.attempts.length === 2) movedAway++;
      }
      expect(movedAway).toBeGreaterThan(0);
      expect(s.gateway.upstream.replicas().map((r) => r.breaker)).toEqual(['closed', 'closed']);
    } finally {
      s.sims[0]!.configure({ faultRates: {} });
    }
  });

  it("a crafted request that makes vLLM raise (a JSON 500) opens no breaker, and the replica's text stays out of the answer", async () => {
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${s.base}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...faultHeaders('request-500') },
        body: JSON.stringify(ask),
      });
      expect(res.status).toBe(500);
      const text = await res.text();
      expect(text).not.toMatch(/sk-internal|10\.0\.3\.7|Traceback|serving_chat/);
      expect((JSON.parse(text) as { error: { code: string } }).error.code).toBe('upstream_error');
    }
    expect(s.gateway.upstream.replicas().map((r) => r.breaker)).toEqual(['closed', 'closed']);
  });

  it('an engine that died (its own words in the 500) does open the breaker', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${s.base}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...faultHeaders('500') },
        body: JSON.stringify(ask),
      });
      expect(res.status).toBe(500);
    }
    expect(s.gateway.upstream.replicas().map((r) => r.breaker)).toEqual(['open', 'open']);
  });
});

describe('through `pnpm start` (the example gateway) with UPSTREAM_URLS pointing at a faulty simulator', () => {
  it('every first attempt meets a gpt-oss failure; every caller gets a normal answer, streamed or not', async () => {
    const sim = await spawnSim([
      '--fault',
      'harmony-500:0.25',
      '--fault',
      'harmony-400:0.25',
      '--fault',
      'harmony-sse-before-text:0.25',
      '--fault',
      'empty-completion:1',
      '--fault-times',
      '1',
    ]);
    const dir = mkdtempSync(join(tmpdir(), 'tera-shield-'));
    writeFileSync(join(dir, 'keys.json'), JSON.stringify([{ key: KEY, id: 'shield' }]));
    const gw = await spawnGateway({ UPSTREAM_URLS: sim.url, GATEWAY_KEYS: join(dir, 'keys.json') });
    try {
      await until(async () => (await fetch(`${gw.url}/health`)).status === 200, 15_000, 'the gateway ready');
      const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 });
      for (let i = 0; i < 6; i++) {
        const answer = await client.chat.completions.create({ ...ask, seed: i });
        expect(answer.choices[0]!.message.content!.length).toBeGreaterThan(0);
        const streamed = await readStream(client, {}, { seed: i });
        expect(streamed.roles).toBe(1);
        expect(streamed.content).toBe(answer.choices[0]!.message.content);
        expect(streamed.finish).toEqual(['stop']);
      }
    } finally {
      await gw.stop();
      await sim.kill();
    }
  });
});
