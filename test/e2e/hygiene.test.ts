import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, type Gateway, type GatewayOptions } from '@tera-gw/gateway';
import { mountGateway, type Framework } from '../helpers/mount.js';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { sseData } from '../helpers/sse.js';

/** What a caller can learn about the deployment: nothing beyond its own answer. */
const model = 'openai/gpt-oss-20b';
const KEY = 'sk-tera-hygiene-test-key';
const SECRET = 'sk-replica-internal-0000';
const INTERNAL = /sk-replica-internal|10\.1\.2\.3|Traceback|\/opt\/vllm/;

/** A replica that prints its internals: a traceback, an address and a key, in 500 bodies and stream error events. */
let leaky: CaptureUpstream;
let leakyUrl: string;
beforeAll(async () => {
  leaky = await startCaptureUpstream((body, res) => {
    const text = `Traceback (most recent call last):\n  File "/opt/vllm/serving_chat.py", line 42\nConnectionError: 10.1.2.3:8000 refused key ${SECRET}`;
    if (!body.includes('"stream":true')) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      return void res.end(text);
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const chunk = (delta: object) =>
      `data: ${JSON.stringify({ id: 'chatcmpl-leaky', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`;
    res.end(
      `${chunk({ role: 'assistant', content: '' })}${chunk({ content: 'Partial answer' })}data: ${JSON.stringify({ error: { message: text, type: 'InternalServerError', code: 500 } })}\n\ndata: [DONE]\n\n`,
    );
  });
  leakyUrl = leaky.url;
});
afterAll(() => leaky.close());

async function serve(options: Partial<GatewayOptions> & Pick<GatewayOptions, 'replicas'>) {
  const gateway: Gateway = createGateway({ auth: { keys: [{ key: KEY, id: 'hygiene' }] }, upstream: { health: false }, ...options });
  const app = express();
  app.use('/v1', gateway);
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
  return {
    base,
    post,
    close: async () => {
      await gateway.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

const ask = { model, messages: [{ role: 'user', content: 'hi' }] };

describe("a replica's internals never reach the caller", () => {
  it('a 500 body with a traceback, an address and a key -> fixed text naming the request id header', async () => {
    const gw = await serve({ replicas: [leakyUrl] });
    try {
      const res = await gw.post(ask);
      expect(res.status).toBe(500);
      const text = await res.text();
      expect(text).not.toMatch(INTERNAL);
      expect(JSON.parse(text)).toEqual({
        error: {
          message:
            'The model server failed to answer after 1 attempt. Retry with backoff; if it persists, report the X-Tera-Request-ID of this response.',
          type: 'server_error',
          param: null,
          code: 'upstream_error',
        },
      });
      expect(res.headers.get('x-tera-request-id')).toMatch(/^req_[0-9a-f]{24}$/);
    } finally {
      await gw.close();
    }
  });

  it('an error event after text went out -> one error event with fixed text', async () => {
    const gw = await serve({ replicas: [leakyUrl] });
    try {
      const res = await gw.post({ ...ask, stream: true });
      const text = await res.text();
      expect(text).toContain('Partial answer');
      expect(text).not.toMatch(INTERNAL);
      const last = JSON.parse(sseData(text).at(-1)!) as { error: { message: string; type: string } };
      expect(last.error).toMatchObject({ type: 'server_error', message: 'The model server failed while streaming. Retry with backoff.' });
    } finally {
      await gw.close();
    }
  });
});

describe.each<Framework>(['express', 'koa'])('no path answers HTML or a stack (%s)', (framework) => {
  let mounted: Awaited<ReturnType<typeof mountGateway>>;
  let capture: CaptureUpstream;
  beforeAll(async () => {
    capture = await startCaptureUpstream();
    mounted = await mountGateway(framework, {
      replicas: [capture.url],
      auth: { keys: [{ key: KEY, id: 'hygiene' }] },
      upstream: { health: false },
    });
  });
  afterAll(async () => {
    await mounted.close();
    await capture.close();
  });

  /** A raw request, so malformed paths reach the server as written. */
  const raw = (method: string, path: string, body?: string) =>
    new Promise<{ status: number; type: string; text: string }>((resolve, reject) => {
      const url = new URL(mounted.url);
      const req = httpRequest(
        {
          host: url.hostname,
          port: url.port,
          method,
          path,
          headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  it.each([
    ['GET', '/v1/models/%', '/v1/models/%'],
    ['GET', '/v1/models/%E0%A4%A', '/v1/models/%E0%A4%A'],
    ['GET', '/v1/responses/%', '/v1/responses/%'],
    ['GET', '/v1/models/ + 5,000 characters', '/v1/models/' + 'x'.repeat(5000)],
  ])('%s %s -> JSON error shape', async (method, _label, path) => {
    const res = await raw(method, path);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(res.type).toMatch(/^application\/json/);
    const body = JSON.parse(res.text) as { error: { message: string } };
    expect(body.error.message.length).toBeLessThan(400);
    expect(res.text).not.toMatch(/URIError|at .*\.js:\d+|node_modules/);
  });

  it.each([200, 5000, 500_000])('a body nested %i deep on /chat/completions and /responses -> 400 JSON', async (depth) => {
    const nested = '['.repeat(depth) + ']'.repeat(depth);
    for (const [path, body] of [
      ['/v1/chat/completions', `{"model":"${model}","messages":[{"role":"user","content":${nested}}]}`],
      ['/v1/responses', `{"model":"${model}","input":${nested}}`],
    ] as const) {
      const res = await raw('POST', path, body);
      expect(res.status).toBe(400);
      expect(res.type).toMatch(/^application\/json/);
      expect((JSON.parse(res.text) as { error: { type: string } }).error.type).toBe('invalid_request_error');
    }
  });
});

describe('identifiers', () => {
  it('request ids are random: no process id, no clock, no counter', async () => {
    const capture = await startCaptureUpstream();
    const gw = await serve({ replicas: [capture.url] });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) ids.push((await gw.post(ask)).headers.get('x-tera-request-id')!);
      for (const id of ids) expect(id).toMatch(/^req_[0-9a-f]{24}$/);
      expect(new Set(ids).size).toBe(ids.length);
      // Consecutive ids share no prefix beyond chance, so they count nothing.
      const sharedPrefix = (a: string, b: string) => {
        let n = 4;
        while (n < a.length && a[n] === b[n]) n++;
        return n - 4;
      };
      const longest = Math.max(...ids.slice(1).map((id, i) => sharedPrefix(id, ids[i]!)));
      expect(longest).toBeLessThan(6);
      // No fixed field (process id, clock's high digits, counter's high digits): every
      // position varies. 40 uniform hex digits show fewer than 4 values with odds < 1e-30.
      for (let pos = 4; pos < ids[0]!.length; pos++) {
        expect(new Set(ids.map((id) => id[pos])).size).toBeGreaterThanOrEqual(4);
      }
    } finally {
      await gw.close();
      await capture.close();
    }
  });
});

describe('trace context', () => {
  const valid = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

  it('without telemetry: a valid traceparent passes, an invalid or doubled one is dropped with its tracestate', async () => {
    const capture = await startCaptureUpstream();
    const gw = await serve({ replicas: [capture.url], telemetry: false });
    try {
      const cases: Array<[Record<string, string>, string | undefined, string | undefined]> = [
        [{ traceparent: valid, tracestate: 'vendor=abc' }, valid, 'vendor=abc'],
        [{ traceparent: valid, tracestate: 'BAD STATE' }, valid, undefined],
        [{ traceparent: 'not-a-trace', tracestate: 'vendor=abc' }, undefined, undefined],
        [{ traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' }, undefined, undefined],
        [{ traceparent: `${valid}, ${valid}` }, undefined, undefined],
        [{ traceparent: 'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }, undefined, undefined],
      ];
      for (const [headers, parent, state] of cases) {
        await gw.post(ask, headers);
        const sent = capture.requests.at(-1)!.headers;
        expect(sent.traceparent).toBe(parent);
        expect(sent.tracestate).toBe(state);
      }
    } finally {
      await gw.close();
      await capture.close();
    }
  });

  it("with telemetry recording: the upstream gets the gateway's own span, never the caller's", async () => {
    const capture = await startCaptureUpstream();
    const spans = new InMemorySpanExporter();
    const tracer = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] }).getTracer('hygiene');
    const gw = await serve({ replicas: [capture.url], telemetry: { tracer } });
    try {
      await gw.post(ask, { traceparent: valid, tracestate: 'vendor=abc' });
      const sent = capture.requests.at(-1)!.headers.traceparent as string;
      const [, traceId, spanId] = sent.split('-');
      const span = spans.getFinishedSpans().find((s) => s.spanContext().spanId === spanId);
      // The request's span: the root of the gateway's trace for this request.
      expect(span?.name).toBe(`chat ${model}`);
      expect(span?.spanContext().traceId).toBe(traceId);
      expect(sent).not.toContain('0af7651916cd43dd8448eb211c80319c');
      expect(capture.requests.at(-1)!.headers.tracestate).toBeUndefined();
    } finally {
      await gw.close();
      await capture.close();
    }
  });
});
