import { once } from 'node:events';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import express from 'express';
import fc from 'fast-check';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { LINGER_LIMITS, createContext, transformSSE } from '@tera-gw/core';
import { createGateway, type Gateway } from '@tera-gw/gateway';
import { harmonyTransform } from '@tera-gw/harmony';
import { reasoningTransform } from '@tera-gw/reasoning';
import { toolCallsTransform } from '@tera-gw/tool-calls';

/** Hostile input: every case answered in the documented shape (or cut by a server timeout), never a crash, a 500 or a hang. */
const model = 'openai/gpt-oss-20b';
const KEY = 'sk-tera-hostile-secret-key-42';
const spans = new InMemorySpanExporter();
const tracer = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] }).getTracer('hostile');
let capture: CaptureUpstream;
const upstreamHeaders = () => capture.requests.map((r) => r.headers);
const upstreamBodies = () => capture.requests.map((r) => r.body);
let gateway: Gateway;
let server: Server;
let base: string;
let port: number;
const logged: string[] = [];

beforeAll(async () => {
  // A capturing upstream: records what reaches it, answers a fixed completion or stream.
  capture = await startCaptureUpstream();
  for (const level of ['log', 'warn', 'error', 'info'] as const) {
    const original = console[level].bind(console);
    console[level] = (...args: unknown[]) => {
      logged.push(args.map(String).join(' '));
      original(...args);
    };
  }
  gateway = createGateway({
    replicas: [capture.url],
    auth: { keys: [{ key: KEY, id: 'hostile' }] },
    telemetry: { tracer, recordContent: false },
    upstream: { health: { intervalMs: 1000 } },
  });
  const app = express();
  app.use('/v1', gateway);
  // What the README tells teams to set: slow clients are cut. Node checks the timeouts every
  // `connectionsCheckingInterval` (30 s by default), so the test checks often.
  server = createServer({ headersTimeout: 1000, requestTimeout: 1500, connectionsCheckingInterval: 100 }, app);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}/v1`;
  await gateway.ready();
});
afterAll(async () => {
  await gateway.close();
  server.closeAllConnections();
  server.close();
  await capture.close();
});

const post = (body: string | Buffer, headers: Record<string, string> = {}) =>
  fetch(`${base}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
    body,
  });

async function expectShape(res: Response, status: number | number[]) {
  expect(Array.isArray(status) ? status : [status]).toContain(res.status);
  const body = (await res.json()) as { error?: { message: string; type: string; param?: string | null; code?: string } };
  if (res.status !== 200) {
    expect(typeof body.error?.message).toBe('string');
    expect(typeof body.error?.type).toBe('string');
  }
  return body;
}

describe('bodies', () => {
  it('not JSON -> 400', async () => {
    await expectShape(await post('this is not json'), 400);
  });

  it('over the body limit (declared) -> 413 at once, in the error shape', async () => {
    const big = Buffer.alloc(5 * 1024 * 1024, 0x61);
    const res = await post(big);
    await expectShape(res, 413);
  });

  it('over the body limit, chunked with no length: the client still uploading reads the 413 (fetch)', async () => {
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let sent = 0;
    // 6 MiB: over the 4 MiB limit, within what the gateway reads away before it answers. The
    // part past the limit trickles, so the client is still uploading when the gateway decides.
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent >= 4.5 * 1024 * 1024) await new Promise((r) => setTimeout(r, 25));
        sent += chunk.length;
        controller.enqueue(chunk);
        if (sent >= 6 * 1024 * 1024) controller.close();
      },
    });
    const res = await fetch(`${base}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: stream,
      duplex: 'half',
    });
    const body = await expectShape(res, 413);
    expect(body.error?.message).toMatch(/larger than 4194304 bytes/);
    expect(res.headers.get('connection')).toBe('close');
  });

  it('a client that reads only once its whole body is sent (as Node 20 fetch does) gets the 413, not a reset', async () => {
    const url = new URL(base);
    const socket = connect(Number(url.port), url.hostname);
    await once(socket, 'connect');
    socket.pause();
    const total = 6 * 1024 * 1024;
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: ${total}\r\n\r\n`,
    );
    const part = Buffer.alloc(512 * 1024, 0x61);
    let error: Error | undefined;
    socket.on('error', (e) => (error = e));
    for (let sent = 0; sent < total && !error; sent += part.length) {
      // The gateway decides at the headers (declared length); the rest of the body comes later.
      await new Promise((r) => setTimeout(r, 10));
      if (!socket.write(part)) await Promise.race([once(socket, 'drain'), once(socket, 'close')]);
    }
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.resume();
    await once(socket, 'close');
    expect(error).toBeUndefined();
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).toContain('"code":"request_too_large"');
  });

  it('the openai SDK sending a body over the limit sees the 413 and its message, not a connection error', async () => {
    const client = new OpenAI({ baseURL: base, apiKey: KEY, maxRetries: 0 });
    const err = await client.chat.completions
      .create({ model, messages: [{ role: 'user', content: 'x'.repeat(6 * 1024 * 1024) }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err).toMatchObject({ status: 413, type: 'invalid_request_error', code: 'request_too_large' });
  });

  it('a 401 answered before a large body was read still reaches the client', async () => {
    const client = new OpenAI({ baseURL: base, apiKey: 'sk-tera-unknown-key-0', maxRetries: 0 });
    const err = await client.chat.completions
      .create({ model, messages: [{ role: 'user', content: 'x'.repeat(3 * 1024 * 1024) }] })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 401 });
  });

  it('an endless body: the gateway stops reading after the limit and its bounded lingering read', async () => {
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += chunk.length;
        controller.enqueue(chunk);
        if (sent > 256 * 1024 * 1024) controller.close();
      },
    });
    const res = await fetch(`${base}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: stream,
      duplex: 'half',
    }).catch((e: unknown) => e as Error);
    // Past the bounds the connection is cut: the answer may or may not arrive, but the upload stops.
    if (res instanceof Response) expect(res.status).toBe(413);
    expect(sent).toBeLessThan(4 * 1024 * 1024 + LINGER_LIMITS.bytes + 8 * 1024 * 1024);
  });

  it('deeply nested JSON -> 400, no stack overflow', async () => {
    await expectShape(await post(`{"model":"${model}","messages":${'['.repeat(100_000)}${']'.repeat(100_000)}}`), 400);
    await expectShape(await post('['.repeat(1_000_000)), 400);
  });

  it('__proto__ and constructor keys: refused, nothing polluted', async () => {
    await expectShape(await post(`{"model":"${model}","messages":[{"role":"user","content":"hi"}],"__proto__":{"admin":true}}`), 400);
    await expectShape(
      await post(`{"model":"${model}","messages":[{"role":"user","content":"hi","constructor":{"prototype":{"admin":true}}}]}`),
      200,
    );
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
    expect(upstreamBodies().at(-1)).not.toContain('constructor');
  });

  it('invalid UTF-8 -> an answer, never a 500', async () => {
    const bytes = Buffer.concat([
      Buffer.from(`{"model":"${model}","messages":[{"role":"user","content":"`),
      Buffer.from([0xff, 0xfe, 0xc3, 0x28]),
      Buffer.from('"}]}'),
    ]);
    await expectShape(await post(bytes), [200, 400]);
  });

  it('thousands of messages are handled', async () => {
    const messages = Array.from({ length: 5000 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `message ${i}` }));
    await expectShape(await post(JSON.stringify({ model, messages })), 200);
  });

  it('a tool schema that is not a schema; a json_schema of absurd size', async () => {
    await expectShape(
      await post(
        JSON.stringify({
          model,
          messages: [{ role: 'user', content: 'x' }],
          tools: [{ type: 'function', function: { name: 'f', parameters: 'not a schema' } }],
        }),
      ),
      400,
    );
    await expectShape(
      await post(
        JSON.stringify({
          model,
          messages: [{ role: 'user', content: 'x' }],
          tools: [{ type: 'function', function: { name: 'f', parameters: { type: 12, properties: [] } } }],
        }),
      ),
      200,
    );
    // Over the bounded checker's size limit (20,000 values): refused, naming the schema, before anything is sent.
    const wide = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`p${i}`, { type: 'string' }]));
    const before = capture.requests.length;
    const refused = await expectShape(
      await post(
        JSON.stringify({
          model,
          messages: [{ role: 'user', content: 'x' }],
          response_format: { type: 'json_schema', json_schema: { name: 's', schema: { type: 'object', properties: wide } } },
        }),
      ),
      400,
    );
    expect(refused.error).toMatchObject({ param: 'response_format.json_schema.schema', code: 'schema_too_complex' });
    expect(capture.requests.length).toBe(before);
  });

  it('a random mix of wrong types everywhere never gives a 500', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(
          fc.constantFrom('model', 'messages', 'tools', 'stream', 'temperature', 'stop', 'n', 'response_format', 'tool_choice'),
          fc.jsonValue(),
        ),
        async (body) => {
          const res = await post(JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }], ...body }));
          expect(res.status).toBeLessThan(500);
          await res.arrayBuffer();
        },
      ),
      { numRuns: 150 },
    );
  });
});

/** Raw HTTP over a socket, for what fetch refuses to send. */
function raw(text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let out = '';
    socket.on('data', (d) => (out += d.toString()));
    socket.on('close', () => resolve(out));
    socket.on('error', () => resolve(out));
    socket.end(text);
  });
}

describe('headers', () => {
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] });
  it('no auth, wrong scheme -> 401 in the error shape', async () => {
    await expectShape(await post(body, { authorization: '' }), 401);
    await expectShape(await post(body, { authorization: `Basic ${Buffer.from(`a:${KEY}`).toString('base64')}` }), 401);
  });

  it('control characters the HTTP parser refuses -> its 400, never a 500', async () => {
    const answer = await raw(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer sk-tera-\x01\x7fkey\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
  });

  it.each([
    ['a tab inside the key', 'sk-tera-\tkey-0001'],
    ['a byte outside ASCII', 'sk-tera-\xe9key-0001'],
    ['a key too short', 'sk-te'],
  ])('%s reaches auth and is told malformed, not unknown (401)', async (_name, key) => {
    const answer = await raw(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${key}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 401/);
    expect(answer).toContain('"message":"The API key provided is malformed."');
  });

  it('huge headers -> 431 from the HTTP server, the process unharmed', async () => {
    const answer = await raw(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\nConnection: close\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 431/);
    expect((await fetch(`${base}/models`, { headers: { authorization: `Bearer ${KEY}` } })).status).toBe(200);
  });

  it('CRLF in a header value cannot reach the upstream', async () => {
    const answer = await raw(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTraceparent: 00-abc\r\n\rX-Injected: yes\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect(upstreamHeaders().some((h) => 'x-injected' in h)).toBe(false);
  });
});

describe('connections', () => {
  it('slowloris (headers trickled) is cut by the headers timeout', async () => {
    const socket = connect(port, '127.0.0.1');
    // Writes after the server cut the connection fail with EPIPE: that is the point.
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    const started = Date.now();
    const trickle = setInterval(() => !socket.destroyed && socket.write('X-Slow: a\r\n'), 200);
    socket.once('close', () => clearInterval(trickle));
    socket.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n');
    // events.once would reject on the EPIPE error; only the close matters.
    await Promise.race([new Promise((r) => socket.once('close', r)), new Promise((r) => setTimeout(r, 8000))]);
    clearInterval(trickle);
    expect(socket.destroyed || socket.readableEnded).toBe(true);
    expect(Date.now() - started).toBeLessThan(8000);
    socket.destroy();
  });

  it('a body trickled forever is cut by the request timeout', async () => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"model":`,
    );
    const trickle = setInterval(() => !socket.destroyed && socket.write(' '), 100);
    socket.once('close', () => clearInterval(trickle));
    const started = Date.now();
    // events.once would reject on the EPIPE error; only the close matters.
    await Promise.race([new Promise((r) => socket.once('close', r)), new Promise((r) => setTimeout(r, 8000))]);
    clearInterval(trickle);
    expect(Date.now() - started).toBeLessThan(8000);
    socket.destroy();
  });
});

describe('secrets', () => {
  it('the API key never appears in logs, span attributes, error messages or upstream requests', async () => {
    await post(JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }));
    await post('not json');
    await post(JSON.stringify({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }));
    const wrong = await post(JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }), {
      authorization: `Bearer ${KEY}-wrong`,
    });
    expect(await wrong.text()).not.toContain(KEY);
    await new Promise((r) => setTimeout(r, 50));
    const attrs = JSON.stringify(spans.getFinishedSpans().map((s) => [s.attributes, s.events]));
    expect(attrs).not.toContain(KEY);
    expect(logged.join('\n')).not.toContain(KEY);
    expect(JSON.stringify(upstreamHeaders())).not.toContain(KEY);
    expect(upstreamBodies().join('\n')).not.toContain(KEY);
    expect(upstreamHeaders().length).toBeGreaterThan(0);
  });
});

describe('fuzz: SSE input to the transforms', () => {
  it('random bytes, random JSON events and broken chunks: the output always ends cleanly', async () => {
    const event = fc.oneof(
      fc.string().map((s) => `data: ${s}\n\n`),
      fc.jsonValue().map((v) => `data: ${JSON.stringify(v)}\n\n`),
      fc
        .record({ content: fc.string(), reasoning: fc.string(), name: fc.string(), args: fc.string(), index: fc.nat(3) })
        .map(
          (r) =>
            `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: { content: r.content, reasoning: r.reasoning, tool_calls: [{ index: r.index, function: { name: r.name, arguments: r.args } }] }, finish_reason: null }] })}\n\n`,
        ),
      fc.uint8Array().map((b) => Buffer.from(b).toString('latin1')),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(event, { maxLength: 20 }), fc.boolean(), async (events, done) => {
        const text = events.join('') + (done ? 'data: [DONE]\n\n' : '');
        const source = new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(new TextEncoder().encode(text)), c.close()) });
        const request = { tools: [{ type: 'function' as const, function: { name: 'f' } }] };
        const out = await new Response(
          transformSSE(source, [harmonyTransform(request), reasoningTransform(), toolCallsTransform(request)], createContext()),
        ).text();
        const last = out.split('\n\n').filter(Boolean).at(-1) ?? '';
        expect(last === 'data: [DONE]' || last.startsWith('data: {"error"')).toBe(true);
      }),
      { numRuns: 400 },
    );
  });
});
