import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import express from 'express';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '@tera-gw/rate-limit';
import { createGateway } from '@tera-gw/gateway';
import type { UsageRecord } from '@tera-gw/telemetry';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';
import { sseData } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';

/**
 * Faults against real simulator processes. For each: the caller gets exactly one well-formed
 * outcome, leases come back, spans end, usage is recorded at most once, and nothing is left
 * behind (sockets, timers, listeners counted before and after).
 */
const model = 'openai/gpt-oss-20b';
const KEY = 'sk-tera-faults-key';
const spans = new InMemorySpanExporter();
const tracer = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] }).getTracer('faults');
const store = new MemoryStore();
const usage: UsageRecord[] = [];

let sims: SimProcess[];
let gateway: Mounted['gateway'];
let url: string;
let close: () => Promise<void>;

async function boot(): Promise<void> {
  const mounted = await mountGateway('express', {
    replicas: sims.map((s) => s.url),
    auth: { keys: [{ key: KEY, id: 'faults', concurrency: 50 }] },
    rateLimit: { store },
    telemetry: { tracer },
    onUsage: (r) => void usage.push(r),
    upstream: {
      health: { intervalMs: 100, timeoutMs: 300 },
      timeouts: { idleMs: 400, firstByteMs: 3000 },
      forwardHeaders: ['x-sim-fault'],
      breaker: { consecutiveFailures: 1000, volumeThreshold: 100_000 },
    },
  });
  gateway = mounted.gateway;
  url = `${mounted.url}/v1/chat/completions`;
  close = () => mounted.close();
  await gateway.ready();
}

beforeAll(async () => {
  sims = await Promise.all([spawnSim(['--itl-ms', '5']), spawnSim(['--itl-ms', '5'])]);
  await boot();
});
afterAll(async () => {
  await close();
  await Promise.all(sims.map((s) => s.kill()));
});
afterEach(async () => {
  await Promise.all(sims.map((s) => s.configure({ failRate: 0, itlMs: 5, healthy: true })));
});

const call = (body: object = {}, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Tell me about weather' }], ...body }),
    ...(signal ? { signal } : {}),
  });

/** One outcome: a complete answer, one clean error response, or a stream that ends with [DONE] or exactly one error event. */
async function outcome(res: Response): Promise<'complete' | 'error-response' | 'stream-error'> {
  const text = await res.text();
  if (res.headers.get('content-type')?.startsWith('text/event-stream')) {
    const events = sseData(text);
    const errors = events.filter((e) => e.startsWith('{"error"'));
    if (events.at(-1) === '[DONE]') {
      expect(errors).toHaveLength(0);
      return 'complete';
    }
    expect(errors).toHaveLength(1);
    expect(events.at(-1)).toBe(errors[0]);
    return 'stream-error';
  }
  const body = JSON.parse(text) as { error?: { type: string; message: string } };
  if (res.status === 200) return 'complete';
  expect(body.error?.type).toBeTruthy();
  return 'error-response';
}

async function settle(): Promise<void> {
  for (let i = 0; i < 50 && (store.inFlight('faults') > 0 || gateway.upstream.replicas().some((r) => r.inFlight > 0)); i++)
    await new Promise((r) => setTimeout(r, 20));
}

function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

describe('faults', () => {
  it('a replica killed mid-stream, none other to resume on: one error event; lease returned; usage once; span ended', async () => {
    const victim = await spawnSim(['--itl-ms', '30']);
    const local = createGateway({
      replicas: [victim.url],
      auth: { keys: [{ key: KEY, id: 'kill' }] },
      rateLimit: { store },
      telemetry: { tracer },
      onUsage: (r) => void usage.push(r),
      upstream: { health: { intervalMs: 100 } },
    });
    const app = express();
    app.use('/v1', local);
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      await local.ready();
      usage.length = 0;
      spans.reset();
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
        body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      });
      const reader = res.body!.getReader();
      // Killed once text reached the caller (before it, the failure is retried where it can be).
      let head = '';
      while (!head.includes('"reasoning"')) head += new TextDecoder().decode((await reader.read()).value);
      await victim.kill();
      let text = '';
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
      expect(text).toMatch(/data: \{"error":\{"message":"The model server stream broke off \(reset\)\. Retry with backoff\."[^\n]*\n\n$/);
      await new Promise((r) => setTimeout(r, 100));
      expect(store.inFlight('kill')).toBe(0);
      expect(usage).toHaveLength(1);
      expect(spans.getFinishedSpans().filter((s) => s.name === `chat ${model}` && s.kind === SpanKind.INTERNAL)).toHaveLength(1);
    } finally {
      await local.close();
      server.closeAllConnections();
      server.close();
    }
  });

  it.each([
    // A reset before any answer takes each replica out of rotation at once (passive health): none is left, so 503.
    ['reset-before-headers', 503],
    // Replicas that answer, badly: every attempt failed, 500 server_error.
    ['500', 500],
    ['503', 500],
  ])('%s on every attempt: one clean error response after retries', async (fault, status) => {
    const res = await call({}, { 'x-sim-fault': fault });
    expect(await outcome(res)).toBe('error-response');
    expect(res.status).toBe(status);
    if (status === 503) expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    await settle();
    expect(store.inFlight('faults')).toBe(0);
    // The health checks bring the replicas back for the next test.
    await until(() => gateway.upstream.replicas().every((r) => r.state === 'ready'), 10_000, 'the replicas back');
  });

  it.each(['drop-mid-stream', 'stall', 'malformed-sse'])(
    '%s after text: the stream is resumed on the other replica and completes; no hang',
    async (fault) => {
      const resumed: string[] = [];
      const listener = (_ctx: unknown, _replica: string, how: string) => resumed.push(how);
      await outcome(await call({ stream: true }));
      await settle();
      const cleanPrompt = usage.at(-1)!.promptTokens!;
      usage.length = 0;
      spans.reset();
      gateway.upstream.events.on('resume', listener);
      const res = await call({ stream: true }, { 'x-sim-fault': fault });
      expect(await outcome(res)).toBe('complete');
      gateway.upstream.events.off('resume', listener);
      expect(resumed).toEqual(['started', 'completed']);
      await settle();
      expect(store.inFlight('faults')).toBe(0);
      // Billed once, as the caller's request: its own prompt, not the continuation's longer one.
      await until(() => usage.length === 1, 2000, 'the usage record');
      expect(usage[0]).toMatchObject({ promptTokens: cleanPrompt, status: 200, aborted: false });
      const span = spans.getFinishedSpans().find((s) => s.name === `chat ${model}` && s.kind === SpanKind.INTERNAL)!;
      expect(span.attributes['tera.resumed']).toBe(1);
      const events = span.events.filter((e) => e.name === 'tera.resume').map((e) => e.attributes!);
      expect(events.map((e) => e['tera.resume.outcome'])).toEqual(['resuming', 'completed']);
      // The continuation re-read the prompt and what was generated: the gateway's cost, in telemetry only.
      expect(events[1]!['tera.resume.prompt_tokens']).toBeGreaterThan(cleanPrompt);
    },
  );

  it('a 503 storm trips every breaker (503 to callers), and they recover through half-open', async () => {
    const storm = createGateway({
      replicas: sims.map((s) => s.url),
      auth: false,
      upstream: { health: { intervalMs: 100 }, breaker: { consecutiveFailures: 3, resetTimeoutMs: 300 } },
    });
    const app = express();
    app.use('/v1', storm);
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const stormUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`;
    const send = () =>
      fetch(stormUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
      });
    try {
      // ready() resolves with one warm replica; the storm needs both (a warm-up it meets keeps a replica out).
      await until(() => storm.upstream.replicas().every((r) => r.state === 'ready'), 10_000, 'both replicas ready');
      const opened = new Set<string>();
      storm.upstream.events.on('breaker', (replica, state) => state === 'open' && opened.add(replica));
      await Promise.all(sims.map((s) => s.configure({ failRate: 1 })));
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) statuses.push((await send()).status);
      expect(opened.size).toBe(2);
      expect(statuses.slice(0, 2)).toEqual([500, 500]);
      // Once every breaker is open the gateway answers at once: no healthy replica.
      expect(statuses).toContain(503);
      await Promise.all(sims.map((s) => s.configure({ failRate: 0 })));
      for (let i = 0; i < 100; i++) {
        if ((await send()).status === 200 && storm.upstream.replicas().every((r) => r.breaker === 'closed')) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(storm.upstream.replicas().map((r) => r.breaker)).toEqual(['closed', 'closed']);
    } finally {
      await storm.close();
      server.closeAllConnections();
      server.close();
    }
  });

  it('a replica that comes back cold is warmed before it takes traffic', async () => {
    const [a] = sims;
    await a!.kill();
    for (let i = 0; i < 100 && gateway.upstream.replicas()[0]!.state !== 'unhealthy'; i++) await new Promise((r) => setTimeout(r, 20));
    sims[0] = await spawnSim(['--itl-ms', '5', '--cold-start-ms', '600'], a!.port);
    for (let i = 0; i < 100 && gateway.upstream.replicas()[0]!.state !== 'warming'; i++) await new Promise((r) => setTimeout(r, 10));
    expect(gateway.upstream.replicas()[0]!.state).toBe('warming');
    for (let i = 0; i < 5; i++) expect((await call({ max_tokens: 5 })).status).toBe(200);
    // Still warming: only the warm-up has reached the cold replica, and it has not finished.
    expect(gateway.upstream.replicas()[0]!.state).toBe('warming');
    expect(await sims[0].metric('vllm:request_success_total')).toBe(0);
    expect(await sims[0].metric('vllm:num_requests_waiting')).toBe(1);
    for (let i = 0; i < 200 && gateway.upstream.replicas()[0]!.state !== 'ready'; i++) await new Promise((r) => setTimeout(r, 20));
    expect(gateway.upstream.replicas()[0]!.state).toBe('ready');
  });
});

describe('clients', () => {
  it.each([
    ['before headers', 0],
    ['mid-reasoning', 3],
    ['mid-content', 50],
  ])('an abort %s returns the lease and cancels upstream work', async (_phase, afterChunks) => {
    // Before headers: the replica holds its first token long enough for the abort to land first.
    await Promise.all(sims.map((s) => s.configure({ itlMs: 15, ttftMs: afterChunks === 0 ? 3000 : 0 })));
    const aborts = async () =>
      (
        await Promise.all(
          sims.map((s) => s.metric('vllm:request_success_total{engine="0",model_name="openai/gpt-oss-20b",finished_reason="abort"}')),
        )
      ).reduce((a, b) => a + b, 0);
    const before = await aborts();
    const controller = new AbortController();
    const pending = call({ stream: true }, {}, controller.signal);
    if (afterChunks === 0) {
      let running = 0;
      for (let i = 0; i < 200 && running === 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
        running = (await Promise.all(sims.map((s) => s.metric('vllm:num_requests_running')))).reduce((a, b) => a + b, 0);
      }
      expect(running).toBe(1);
      controller.abort();
      // No header had come: the client's request fails rather than resolving to a response.
      expect(
        await pending.then(
          () => 'answered',
          () => 'aborted',
        ),
      ).toBe('aborted');
    } else {
      const res = await pending;
      const reader = res.body!.getReader();
      let seen = 0;
      while (seen < afterChunks) {
        const r = await reader.read();
        if (r.done) break;
        seen += new TextDecoder().decode(r.value).split('\n\n').length - 1;
      }
      controller.abort();
      await reader.read().catch(() => undefined);
    }
    await settle();
    expect(store.inFlight('faults')).toBe(0);
    let after = await aborts();
    for (let i = 0; i < 50 && after !== before + 1; i++) {
      await new Promise((r) => setTimeout(r, 20));
      after = await aborts();
    }
    // The replica saw the request end early: its generation was cancelled, whatever the phase.
    expect(after).toBe(before + 1);
    await Promise.all(sims.map((s) => s.configure({ ttftMs: 0 })));
  });

  it('an abort mid-tool-call returns the lease', async () => {
    await Promise.all(sims.map((s) => s.configure({ itlMs: 15 })));
    const controller = new AbortController();
    const res = await call(
      {
        stream: true,
        tools: [
          {
            type: 'function',
            function: {
              name: 'get_weather',
              description: 'weather',
              parameters: { type: 'object', properties: { city: { type: 'string' }, notes: { type: 'string', minLength: 60 } } },
            },
          },
        ],
      },
      {},
      controller.signal,
    );
    const reader = res.body!.getReader();
    for (;;) {
      const r = await reader.read();
      if (r.done || new TextDecoder().decode(r.value).includes('"arguments":"')) break;
    }
    controller.abort();
    await reader.read().catch(() => undefined);
    await settle();
    expect(store.inFlight('faults')).toBe(0);
  });

  it('a slow reader: back-pressure keeps the gateway memory bounded', async () => {
    // An upstream in its own process (so its buffers are not counted here) that streams ~16 MB as fast as the socket takes it.
    const { request } = await import('node:http');
    const { spawn } = await import('node:child_process');
    const upstreamScript = `
      const event = 'data: ' + JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: 'x'.repeat(2000) }, finish_reason: null }] }) + '\\n\\n';
      const server = require('node:http').createServer((req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let sent = 0;
        const pump = () => { while (sent < 8000) { sent++; if (!res.write(event)) return void res.once('drain', pump); } res.end('data: [DONE]\\n\\n'); };
        pump();
      });
      server.listen(0, '127.0.0.1', () => console.log('listening on ' + server.address().port));`;
    const child = spawn(process.execPath, ['-e', upstreamScript], { stdio: ['ignore', 'pipe', 'inherit'] });
    const upstreamPort = await new Promise<number>((resolve) =>
      child.stdout.on('data', (d: Buffer) => resolve(Number(/listening on (\d+)/.exec(d.toString())![1]))),
    );
    const fast = { close: () => child.kill() };
    const local = createGateway({ replicas: [`http://127.0.0.1:${upstreamPort}`], auth: false, upstream: { health: false } });
    const app = express();
    app.use('/v1', local);
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const port = (server.address() as AddressInfo).port;
      (globalThis as { gc?: () => void }).gc?.();
      const heapBefore = process.memoryUsage().heapUsed;
      const res = await new Promise<import('node:http').IncomingMessage>((resolve) => {
        const req = request(
          { host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' } },
          resolve,
        );
        req.end(JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'long' }] }));
      });
      res.pause();
      await new Promise((r) => setTimeout(r, 700));
      (globalThis as { gc?: () => void }).gc?.();
      const heapHeld = process.memoryUsage().heapUsed - heapBefore;
      let bytes = 0;
      res.on('data', (d: Buffer) => (bytes += d.length));
      res.resume();
      await once(res, 'end');
      expect(bytes).toBeGreaterThan(15_000_000);
      // While the client read nothing, the gateway held a small part of the answer, not all of it.
      expect(heapHeld).toBeLessThan(bytes / 4);
    } finally {
      await local.close();
      server.closeAllConnections();
      server.close();
      fast.close();
    }
  });
});

describe('nothing left behind', () => {
  it('after a mix of faults and aborts, open handles return to the baseline', async () => {
    // Health checks and metric scrapes open short-lived sockets and timers of their own: take the
    // fewest seen over a short window, before and after.
    const quietest = async () => {
      await settle();
      const seen: Record<string, number> = {};
      for (let i = 0; i < 8; i++) {
        await new Promise((r) => setTimeout(r, 60));
        for (const [kind, n] of Object.entries(resources())) seen[kind] = Math.min(seen[kind] ?? Infinity, n);
      }
      return seen;
    };
    const baseline = await quietest();
    for (const fault of ['500', 'reset-before-headers', 'drop-mid-stream', 'malformed-sse'])
      await outcome(await call({ stream: true }, { 'x-sim-fault': fault }));
    const controller = new AbortController();
    const res = await call({ stream: true }, {}, controller.signal);
    await res.body!.getReader().read();
    controller.abort();
    const now = await quietest();
    // At most one idle keep-alive socket per replica may stay pooled (failures before any text are now retried on the
    // other replica, so both get one); anything beyond is a leak.
    for (const kind of ['Timeout', 'TCPWrap']) expect(now[kind] ?? 0).toBeLessThanOrEqual((baseline[kind] ?? 0) + 1);
    expect(now.TCPSocketWrap ?? 0).toBeLessThanOrEqual((baseline.TCPSocketWrap ?? 0) + sims.length);
  });
});
