import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compose, context, sendJSON, type Middleware } from '@tera-gw/core';
import { telemetry, type UsageRecord } from '../src/index.js';
import { recordingLogger } from '../../../test/helpers/logger.js';

/** The telemetry stage alone, in front of a stand-in upstream stage that fills the context as the adapter does. */
const spans = new InMemorySpanExporter();
const tracer = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] }).getTracer('unit');
const records: UsageRecord[] = [];
const logger = recordingLogger();
let throwOnUsage = false;
let server: Server;
let url: string;

const upstream: Middleware = (req, res) => {
  const ctx = context(req, res);
  ctx.key = { id: 'team-t', models: '*' };
  ctx.body = { model: 'openai/gpt-oss-20b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 7, stream: false };
  ctx.upstream = { attempts: 2, replica: 'http://10.0.0.9:8000', attemptLog: [], finishReason: 'stop', firstByteMs: 3 };
  ctx.usage = { prompt_tokens: 1000, completion_tokens: 100, total_tokens: 1100, completion_tokens_details: { reasoning_tokens: 40 } };
  sendJSON(res, 200, { ok: true });
};

beforeAll(async () => {
  const stage = telemetry({
    tracer,
    onUsage: (r) => {
      if (throwOnUsage) throw new Error('billing down');
      records.push(r);
    },
    logger,
  });
  server = createServer((req, res) => compose([stage, upstream])(req, res, () => undefined));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => server.close());

describe('telemetry()', () => {
  it('one span per request with the GenAI attributes, and a usage record with its cost', async () => {
    await (await fetch(url)).text();
    await new Promise((r) => setTimeout(r, 20));
    const span = spans.getFinishedSpans().at(-1)!;
    expect(span.name).toBe('chat openai/gpt-oss-20b');
    expect(span.attributes).toMatchObject({
      'gen_ai.usage.input_tokens': 1000,
      'gen_ai.usage.output_tokens': 100,
      'gen_ai.request.max_tokens': 7,
      'http.response.status_code': 200,
    });
    const record = records.at(-1)!;
    expect(record).toMatchObject({ keyId: 'team-t', promptTokens: 1000, completionTokens: 100, reasoningTokens: 40, attempts: 2 });
    // $0.07 per million in, $0.25 per million out.
    expect(record.costUSD).toBeCloseTo((1000 * 0.07 + 100 * 0.25) / 1e6, 12);
  });

  it('a throwing onUsage hook is logged with the request id, and the request is unharmed', async () => {
    throwOnUsage = true;
    try {
      const res = await fetch(url);
      expect(res.status).toBe(200);
      await res.text();
      await new Promise((r) => setTimeout(r, 20));
      const line = logger.lines.find((l) => l.message === 'telemetry: onUsage threw');
      expect(line?.fields.requestId).toMatch(/^req_[0-9a-f]{24}$/);
      expect(line?.fields.err).toBeInstanceOf(Error);
    } finally {
      throwOnUsage = false;
    }
  });
});
