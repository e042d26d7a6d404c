import { createServer } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { startCaptureUpstream } from '../../../test/helpers/capture-upstream.js';
import { model, spawnSim, sseEvents, startGateway, until, type SimProcess, type TestGateway } from './helpers.js';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});
async function sims(n: number, args: string[] = []): Promise<SimProcess[]> {
  const list = await Promise.all(Array.from({ length: n }, () => spawnSim(args)));
  for (const s of list) cleanup.push(() => s.kill());
  return list;
}
async function gateway(...args: Parameters<typeof startGateway>): Promise<TestGateway> {
  const gw = await startGateway(...args);
  cleanup.push(() => gw.close());
  return gw;
}
const fast = { intervalMs: 100, timeoutMs: 500 };
const messages = [{ role: 'user' as const, content: 'Hello there' }];
const post = (gw: TestGateway, body: object, headers: Record<string, string> = {}) =>
  fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model, messages, ...body }),
  });

describe('routing and retries', () => {
  it('spreads concurrent load by requests in flight', async () => {
    const replicas = await sims(3, ['--itl-ms', '10']);
    const gw = await gateway({ replicas: replicas.map((s) => s.url), health: fast, routing: 'least-request' });
    // ready() resolves with the first warm replica; spreading needs all three.
    await until(() => gw.upstream.replicas().every((r) => r.state === 'ready'), 10_000, 'all ready');
    const streams = await Promise.all(
      Array.from({ length: 9 }, () => gw.client.chat.completions.create({ model, messages, stream: true, max_tokens: 30 })),
    );
    await Promise.all(
      streams.map(async (s) => {
        for await (const _ of s) void _;
      }),
    );
    const served = await Promise.all(replicas.map((s) => s.metric('vllm:request_success_total')));
    // Each replica also served its one warm-up completion.
    expect(served).toEqual([4, 4, 4]);
  });

  it('a 5xx before the first byte is retried on another replica; the caller sees one 200', async () => {
    const [bad, good] = await sims(2);
    // The failing replica is always the first choice, and no health check can take it out of rotation under load.
    const firstCandidate = { pick: <R>(_request: unknown, candidates: readonly R[]) => candidates[0] };
    const gw = await gateway({ replicas: [bad!.url, good!.url], health: false, router: firstCandidate });
    await bad!.configure({ failRate: 1 });
    let retries = 0;
    gw.upstream.events.on('retry', () => retries++);
    for (let i = 0; i < 6; i++) {
      const res = await gw.client.chat.completions.create({ model, messages });
      expect(res.choices[0]!.message.content!.length).toBeGreaterThan(0);
    }
    const stream = await gw.client.chat.completions.create({ model, messages, stream: true });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    expect(text.length).toBeGreaterThan(0);
    expect(retries).toBeGreaterThan(0);
  });

  it('a replica answering 500 leaves rotation (breaker opens) and comes back after it heals', async () => {
    const [flaky, steady] = await sims(2);
    const gw = await gateway({
      replicas: [flaky!.url, steady!.url],
      health: fast,
      breaker: { consecutiveFailures: 3, resetTimeoutMs: 300 },
    });
    await until(() => gw.upstream.replicas().every((r) => r.state === 'ready'), 10_000, 'both ready');
    await flaky!.configure({ failRate: 1 });
    const states: string[] = [];
    gw.upstream.events.on('breaker', (replica, state) => replica.includes(String(flaky!.port)) && states.push(state));
    for (let i = 0; i < 60 && !states.includes('open'); i++) await gw.client.chat.completions.create({ model, messages });
    expect(states).toContain('open');
    expect(gw.upstream.replicas()[0]!.breaker).toBe('open');
    await flaky!.configure({ failRate: 0 });
    await until(
      async () => {
        await gw.client.chat.completions.create({ model, messages });
        return gw.upstream.replicas()[0]!.breaker === 'closed';
      },
      10_000,
      'breaker to close',
    );
    expect(states).toEqual(['open', 'halfOpen', 'closed']);
  });

  it('a killed replica leaves rotation; restarted on its port it is warmed and serves again', async () => {
    const [a, b] = await sims(2);
    const gw = await gateway({ replicas: [a!.url, b!.url], health: fast });
    await until(() => gw.upstream.replicas().every((r) => r.state === 'ready'), 10_000, 'both ready');
    await a!.kill();
    for (let i = 0; i < 5; i++) expect((await gw.client.chat.completions.create({ model, messages })).choices).toHaveLength(1);
    await until(() => gw.upstream.replicas()[0]!.state === 'unhealthy', 5000, 'a unhealthy');
    const again = await spawnSim([], a!.port);
    cleanup.push(() => again.kill());
    await until(() => gw.upstream.replicas()[0]!.state === 'ready', 10_000, 'a ready again');
    expect(await again.metric('vllm:request_success_total')).toBeGreaterThanOrEqual(1); // the warm-up
  });

  it('all replicas down -> 503 service_unavailable with Retry-After', async () => {
    const [a] = await sims(1);
    const gw = await gateway({ replicas: [a!.url], health: fast });
    await gw.upstream.ready();
    await a!.kill();
    await until(() => gw.upstream.replicas()[0]!.state === 'unhealthy', 5000, 'unhealthy');
    const res = await post(gw, {});
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    expect(res.headers.get('x-tera-request-id')).toMatch(/^req_/);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('service_unavailable');
  });

  it('connection refused on every replica -> 503 no_healthy_upstream with Retry-After, and both leave rotation at once', async () => {
    const gw = await gateway({ replicas: ['http://127.0.0.1:9', 'http://127.0.0.1:7'], health: false });
    const res = await post(gw, {});
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    const body = (await res.json()) as { error: { type: string; code: string } };
    expect(body.error).toMatchObject({ type: 'service_unavailable', code: 'no_healthy_upstream' });
    expect(gw.upstream.replicas().map((r) => r.state)).toEqual(['unhealthy', 'unhealthy']);
  });

  it('a cold replica gets no real traffic before its warm-up', async () => {
    const [warm] = await sims(1);
    const [cold] = await sims(1, ['--cold-start-ms', '1500']);
    const gw = await gateway({ replicas: [warm!.url, cold!.url], health: fast });
    await until(() => gw.upstream.replicas()[0]!.state === 'ready', 10_000, 'warm ready');
    expect(gw.upstream.replicas()[1]!.state).toBe('warming');
    for (let i = 0; i < 10; i++) await gw.client.chat.completions.create({ model, messages });
    // Only the warm-up is waiting on the cold replica.
    expect(await cold!.metric('vllm:num_requests_waiting')).toBe(1);
    expect(await cold!.metric('vllm:request_success_total')).toBe(0);
    await until(() => gw.upstream.replicas()[1]!.state === 'ready', 10_000, 'cold ready');
  });
});

describe('streams', () => {
  it('a drop mid-stream gives the caller an error event and a closed stream, not a hang', async () => {
    const [a] = await sims(1);
    const gw = await gateway({ replicas: [a!.url], health: fast, forwardHeaders: ['x-sim-fault'] });
    await gw.upstream.ready();
    const res = await post(gw, { stream: true }, { 'x-sim-fault': 'drop-mid-stream' });
    expect(res.status).toBe(200);
    const events = await sseEvents(res);
    expect(events.length).toBeGreaterThan(1);
    const last = JSON.parse(events.at(-1)!) as { error: { type: string } };
    expect(last.error.type).toBe('server_error');
    expect(events.filter((e) => e.includes('"error"'))).toHaveLength(1);
    expect(events).not.toContain('[DONE]');
  });

  it.each(['malformed-sse', 'stall'])('%s after the first byte -> one error event', async (fault) => {
    const [a] = await sims(1);
    const gw = await gateway({ replicas: [a!.url], health: fast, forwardHeaders: ['x-sim-fault'], timeouts: { idleMs: 300 } });
    await gw.upstream.ready();
    const events = await sseEvents(await post(gw, { stream: true }, { 'x-sim-fault': fault }));
    expect(JSON.parse(events.at(-1)!)).toMatchObject({ error: { type: 'server_error' } });
  });

  it('a reset before headers is retried on the other replica', async () => {
    const resets = createServer((req) => req.socket.destroy());
    resets.listen(0, '127.0.0.1');
    await once(resets, 'listening');
    cleanup.push(() => void resets.close());
    const [good] = await sims(1);
    const gw = await gateway({
      replicas: [`http://127.0.0.1:${(resets.address() as AddressInfo).port}`, good!.url],
      health: false,
      maxAttempts: 2,
    });
    for (let i = 0; i < 4; i++) {
      const events = await sseEvents(await post(gw, { stream: true }));
      expect(events.at(-1)).toBe('[DONE]');
    }
  });

  it('a client abort cancels upstream generation at once', async () => {
    const [a] = await sims(1, ['--itl-ms', '20']);
    const gw = await gateway({ replicas: [a!.url], health: fast });
    await gw.upstream.ready();
    const controller = new AbortController();
    const stream = await gw.client.chat.completions.create({ model, messages, stream: true }, { signal: controller.signal });
    let n = 0;
    await (async () => {
      for await (const _ of stream) if (++n === 3) controller.abort();
    })().catch(() => undefined);
    await until(
      async () => (await a!.metric('vllm:request_success_total{engine="0",model_name="openai/gpt-oss-20b",finished_reason="abort"}')) === 1,
      5000,
      'upstream abort',
    );
    expect(await a!.metric('vllm:num_requests_running')).toBe(0);
    expect(gw.upstream.replicas()[0]!.inFlight).toBe(0);
  });

  it('the usage chunk reaches the caller only when asked for', async () => {
    const [a] = await sims(1);
    const gw = await gateway({ replicas: [a!.url], health: fast });
    await gw.upstream.ready();
    const without = await sseEvents(await post(gw, { stream: true }));
    expect(without.some((e) => e.includes('"usage"'))).toBe(false);
    const withUsage = await sseEvents(await post(gw, { stream: true, stream_options: { include_usage: true } }));
    const usage = JSON.parse(withUsage.at(-2)!) as { choices: unknown[]; usage: { total_tokens: number } };
    expect(usage.choices).toEqual([]);
    expect(usage.usage.total_tokens).toBeGreaterThan(0);
  });

  it('reasoning and tool calls stream through unchanged with the SDK', async () => {
    const [a] = await sims(1);
    const gw = await gateway({ replicas: [a!.url], health: fast });
    await gw.upstream.ready();
    const tools = [
      {
        type: 'function' as const,
        function: {
          name: 'get_weather',
          description: 'weather for a city',
          parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        },
      },
    ];
    const direct = new OpenAI({ baseURL: `${a!.url}/v1`, apiKey: 'x' });
    const body = { model, messages: [{ role: 'user' as const, content: 'weather in Oslo?' }], tools, seed: 3 };
    const viaGateway = await gw.client.chat.completions.stream(body).finalChatCompletion();
    const straight = await direct.chat.completions.stream(body).finalChatCompletion();
    expect(viaGateway.choices[0]!.message.tool_calls).toEqual(straight.choices[0]!.message.tool_calls);
    expect(viaGateway.choices[0]!.finish_reason).toBe('tool_calls');
    // Reasoning, summed from the deltas (the SDK's helper keeps only the last fragment of fields it does not know).
    const reasoningOf = async (client: OpenAI) => {
      let text = '';
      let fragments = 0;
      for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
        const delta = chunk.choices[0]?.delta as { reasoning?: string } | undefined;
        if (delta?.reasoning) {
          text += delta.reasoning;
          fragments++;
        }
      }
      return { text, fragments };
    };
    const [gatewayReasoning, directReasoning] = await Promise.all([reasoningOf(gw.client), reasoningOf(direct)]);
    expect(directReasoning.text).toMatch(/^The user asks: "weather in Oslo\?"/);
    expect(gatewayReasoning).toEqual(directReasoning);
  });
});

describe('request rewriting', () => {
  it('never forwards the caller key or OpenAI headers; X-Request-Id is the gateway request id; output budget filled', async () => {
    const capture = await startCaptureUpstream();
    cleanup.push(() => capture.close());
    const gw = await gateway({
      replicas: [capture.url],
      health: false,
      apiKey: 'upstream-secret',
    });
    const res = await post(
      gw,
      { user: 'u1', stream: false, metadata: { a: 'b' } },
      {
        authorization: 'Bearer sk-caller-secret',
        'openai-organization': 'org-1',
        'openai-project': 'proj-1',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      },
    );
    expect(res.status).toBe(200);
    const { headers } = capture.requests[0]!;
    const body = JSON.parse(capture.requests[0]!.body) as Record<string, unknown>;
    expect(headers.authorization).toBe('Bearer upstream-secret');
    expect(headers['openai-organization']).toBeUndefined();
    expect(headers['openai-project']).toBeUndefined();
    expect(headers.traceparent).toMatch(/^00-/);
    expect(headers['x-request-id']).toBe(res.headers.get('x-tera-request-id'));
    // The salt is the tenant partition: an HMAC (43 base64url characters), never the key or its id.
    expect(body).toEqual({ model, messages, stream: false, max_tokens: 4096, cache_salt: expect.stringMatching(/^[\w-]{43}$/) });
    expect(JSON.stringify(body)).not.toContain('sk-caller-secret');
  });

  it('an upstream context-length 400 becomes invalid_request_error / context_length_exceeded, not retried', async () => {
    const [a, b] = await sims(2, ['--max-model-len', '2000', '--error-format', 'flat']);
    const gw = await gateway({ replicas: [a!.url, b!.url], health: fast });
    await until(() => gw.upstream.replicas().every((r) => r.state === 'ready'), 10_000, 'ready');
    let retries = 0;
    gw.upstream.events.on('retry', () => retries++);
    const res = await post(gw, { messages: [{ role: 'user', content: 'word '.repeat(3000) }], max_tokens: 100 });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { type: string; code: string; message: string } };
    expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'context_length_exceeded' });
    expect(body.error.message).toMatch(/maximum context length is 2000 tokens/);
    expect(retries).toBe(0);
  });
});
