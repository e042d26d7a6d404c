import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import type { GatewayOptions } from '@tera-gw/gateway';
import type { UsageRecord } from '@tera-gw/telemetry';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';
import { sleep, until } from '../helpers/wait.js';

/**
 * Admission with simulator processes as replicas: while the pool is full, requests wait at the
 * gateway by band, take turns by flow, keep their order within a flow, and leave on a wait
 * limit, a disconnect or a cap, each with the documented answer.
 */
const model = 'openai/gpt-oss-20b';
const OPERATOR = 'sk-tera-admission-operator';
const keys: NonNullable<Exclude<GatewayOptions['auth'], false>['keys']> = [
  { key: 'sk-tera-admission-a', id: 'a', concurrency: 64 },
  { key: 'sk-tera-admission-b', id: 'b', concurrency: 64 },
  { key: 'sk-tera-admission-high', id: 'high', concurrency: 64, priority: 5 },
  { key: 'sk-tera-admission-shed', id: 'shed', concurrency: 64, priority: -1 },
  { key: 'sk-tera-admission-front', id: 'front', concurrency: 64, fairnessFromHeader: true },
  { key: OPERATOR, id: 'operator', concurrency: 64, operator: true },
];

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function sim(args: string[]): Promise<SimProcess> {
  const s = await spawnSim(args);
  cleanups.push(() => s.kill());
  return s;
}

async function gateway(options: Partial<GatewayOptions> & Pick<GatewayOptions, 'replicas'>): Promise<Mounted> {
  const gw = await mountGateway('express', { auth: { keys }, telemetry: false, ...options });
  cleanups.push(() => gw.close());
  return gw;
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  /** `performance.now()` when the whole answer had arrived. */
  doneAt: number;
}

function ask(
  gw: Mounted,
  key: string,
  content: string,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
  maxTokens = 4,
): Promise<Answer> {
  return fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model, messages: [{ role: 'user', content }], max_tokens: maxTokens }),
    signal: signal ?? null,
  }).then(async (res) => ({ status: res.status, headers: res.headers, text: await res.text(), doneAt: performance.now() }));
}

async function queued(gw: Mounted): Promise<number> {
  const res = await fetch(`${gw.url}/health`, { headers: { authorization: `Bearer ${OPERATOR}` } });
  const body = (await res.json()) as { queue?: { queued: number } };
  return body.queue?.queued ?? 0;
}

/** Sends one request and waits until it is queued, so arrival order is exact; `answer` settles when it is served. */
async function enqueue(gw: Mounted, expected: number, key: string, content: string, headers: Record<string, string> = {}) {
  const answer = ask(gw, `sk-tera-admission-${key}`, content, headers);
  await until(async () => (await queued(gw)) >= expected, 5000, `${expected} queued`);
  return { answer };
}

/** 50 ms a token and one sequence at a time: a 60-token blocker holds the slot while the rest queue up; each queued request takes 4. */
const SLOW_ONE_SLOT = ['--max-num-seqs', '1', '--itl-ms', '50'];

/** Fills the replica's only slot with a long request; resolves once it runs there (`blocker` settles when it ends). */
async function occupy(gw: Mounted, s: SimProcess): Promise<{ blocker: Promise<Answer> }> {
  const blocker = ask(gw, 'sk-tera-admission-a', 'blocker', {}, undefined, 60);
  await until(async () => (await s.metric('vllm:num_requests_running')) === 1, 5000, 'blocker running');
  return { blocker };
}

const order = (answers: Array<[string, Answer]>) =>
  answers
    .slice()
    .sort((x, y) => x[1].doneAt - y[1].doneAt)
    .map(([name]) => name);

describe('admission while the pool is full', () => {
  it('higher bands first, flows of a band in turn, first come first served within a flow', async () => {
    const s = await sim(SLOW_ONE_SLOT);
    // Telemetry on: the wait is a histogram on the gateway's Prometheus endpoint.
    const gw = await gateway({ replicas: [s.url], upstream: { health: false, maxNumSeqs: 1 }, telemetry: {} });
    const { blocker } = await occupy(gw, s);
    const sent: Array<[string, Promise<Answer>]> = [];
    let n = 0;
    for (const [key, name] of [
      ['a', 'A1'],
      ['a', 'A2'],
      ['a', 'A3'],
      ['b', 'B1'],
      ['b', 'B2'],
      ['high', 'H1'],
    ] as const)
      sent.push([name, (await enqueue(gw, ++n, key, name)).answer]);
    const answers = await Promise.all(sent.map(async ([name, p]) => [name, await p] as [string, Answer]));
    expect((await blocker).status).toBe(200);
    for (const [, a] of answers) expect(a.status).toBe(200);
    expect(order(answers)).toEqual(['H1', 'A1', 'B1', 'A2', 'B2', 'A3']);
    // The replica never queued anything itself: the gateway held the rest.
    expect(await s.metric('vllm:num_requests_waiting')).toBe(0);
    const waited = answers.map(([, a]) => Number(a.headers.get('x-tera-queue-ms')));
    for (const ms of waited) expect(ms).toBeGreaterThan(50);
    expect((await blocker).headers.get('x-tera-queue-ms')).toBe('0');
    const metrics = await (await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${OPERATOR}` } })).text();
    const count = /^tera_queue_duration_count\{[^}]*\} (\d+)/m.exec(metrics);
    expect(Number(count?.[1])).toBe(7);
    // Six waited longer than 40 ms; only the blocker went straight through.
    const fast = /^tera_queue_duration_bucket\{[^}]*le="0.04"[^}]*\} (\d+)/m.exec(metrics);
    expect(Number(fast?.[1])).toBe(1);
  });

  it('an in-house gateway key queues its end users as separate flows; other keys cannot', async () => {
    const s = await sim(SLOW_ONE_SLOT);
    const gw = await gateway({ replicas: [s.url], upstream: { health: false, maxNumSeqs: 1 } });
    const { blocker } = await occupy(gw, s);
    const sent: Array<[string, Promise<Answer>]> = [];
    let n = 0;
    for (const [user, name] of [
      ['alice', 'alice1'],
      ['alice', 'alice2'],
      ['bob', 'bob1'],
    ] as const)
      sent.push([name, (await enqueue(gw, ++n, 'front', name, { 'x-tera-fairness-id': user })).answer]);
    // Key `a` may not name end users: its header is ignored and its requests stay one flow.
    sent.push(['a1', (await enqueue(gw, ++n, 'a', 'a1', { 'x-tera-fairness-id': 'mallory' })).answer]);
    sent.push(['a2', (await enqueue(gw, n + 1, 'a', 'a2', { 'x-tera-fairness-id': 'trent' })).answer]);
    const answers = await Promise.all(sent.map(async ([name, p]) => [name, await p] as [string, Answer]));
    await blocker;
    expect(order(answers)).toEqual(['alice1', 'bob1', 'a1', 'alice2', 'a2']);
  });

  it('X-Tera-Priority lowers a key’s band but never raises it; a malformed one is a 400', async () => {
    const s = await sim(SLOW_ONE_SLOT);
    const gw = await gateway({ replicas: [s.url], upstream: { health: false, maxNumSeqs: 1 } });
    const { blocker } = await occupy(gw, s);
    const raised = (await enqueue(gw, 1, 'a', 'raised', { 'x-tera-priority': '9' })).answer;
    const lowered = (await enqueue(gw, 2, 'high', 'lowered', { 'x-tera-priority': '0' })).answer;
    const high = (await enqueue(gw, 3, 'high', 'high')).answer;
    const shedByHeader = await ask(gw, 'sk-tera-admission-high', 'shed', { 'x-tera-priority': '-1' });
    expect(shedByHeader.status).toBe(429);
    const bad = await ask(gw, 'sk-tera-admission-a', 'bad', { 'x-tera-priority': 'urgent' });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.text)).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_priority' } });
    const answers: Array<[string, Answer]> = [
      ['raised', await raised],
      ['lowered', await lowered],
      ['high', await high],
    ];
    await blocker;
    // `raised` stays in band 0 and arrived before `lowered`, which was moved down to it.
    expect(order(answers)).toEqual(['high', 'raised', 'lowered']);
  });

  it('wait limits end in a 429 with Retry-After; sheddable requests are refused at once; a disconnect costs the replica nothing', async () => {
    const s = await sim(['--max-num-seqs', '1', '--ttft-ms', '1500']);
    const gw = await gateway({ replicas: [s.url], upstream: { health: false, maxNumSeqs: 1 }, admission: { maxWaitMs: 300 } });
    const blocker = ask(gw, 'sk-tera-admission-a', 'blocker');
    await until(async () => (await s.metric('vllm:num_requests_running')) === 1, 5000, 'blocker running');

    const started = performance.now();
    const timedOut = await ask(gw, 'sk-tera-admission-b', 'waits too long');
    expect(timedOut.status).toBe(429);
    expect(performance.now() - started).toBeGreaterThanOrEqual(280);
    expect(Number(timedOut.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(timedOut.text)).toMatchObject({ error: { type: 'rate_limit_error', code: 'queue_timeout' } });

    const shed = await ask(gw, 'sk-tera-admission-shed', 'sheddable');
    expect(shed.status).toBe(429);
    expect(shed.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(JSON.parse(shed.text)).toMatchObject({ error: { type: 'rate_limit_error', code: 'pool_full' } });

    const promptBefore = await s.metric('vllm:prompt_tokens_total');
    const aborter = new AbortController();
    const leaving = ask(gw, 'sk-tera-admission-b', 'leaves while queued', {}, aborter.signal).catch((e: unknown) => e);
    await until(async () => (await queued(gw)) === 1, 5000, 'queued');
    aborter.abort();
    await leaving;
    await until(async () => (await queued(gw)) === 0, 5000, 'left the queue');
    expect((await blocker).status).toBe(200);
    await sleep(100);
    // Only the blocker's prompt reached the replica, and nothing was cancelled there.
    expect(await s.metric('vllm:prompt_tokens_total')).toBe(promptBefore);
    expect(await s.metric('vllm:request_success_total{engine="0",model_name="openai/gpt-oss-20b",finished_reason="abort"}')).toBe(0);

    // With room, a sheddable request is served like any other.
    expect((await ask(gw, 'sk-tera-admission-shed', 'room now')).status).toBe(200);
  });

  it('learns capacity from /metrics and then holds the excess at the gateway, not in the replica’s queue', async () => {
    const s = await sim(['--max-num-seqs', '2', '--ttft-ms', '400']);
    const gw = await gateway({ replicas: [s.url], upstream: { health: { warmUp: false, intervalMs: 200, metricsIntervalMs: 50 } } });
    await gw.gateway.ready(5000);
    // No capacity known yet: nothing is held, so the replica queues the excess itself, once.
    const first = Array.from({ length: 5 }, (_, i) => ask(gw, 'sk-tera-admission-a', `first ${i}`));
    await until(
      async () => {
        const res = await fetch(`${gw.url}/health`, { headers: { authorization: `Bearer ${OPERATOR}` } });
        const body = (await res.json()) as { replicas: Array<{ capacity?: number }> };
        return body.replicas[0]!.capacity === 2;
      },
      5000,
      'capacity learned',
    );
    await Promise.all(first);
    const second = Array.from({ length: 6 }, (_, i) => ask(gw, 'sk-tera-admission-a', `second ${i}`));
    let maxQueuedHere = 0;
    let maxWaitingThere = 0;
    const watching = (async () => {
      for (let i = 0; i < 20; i++) {
        maxQueuedHere = Math.max(maxQueuedHere, await queued(gw));
        maxWaitingThere = Math.max(maxWaitingThere, await s.metric('vllm:num_requests_waiting'));
        await sleep(50);
      }
    })();
    const answers = await Promise.all(second);
    await watching;
    for (const a of answers) expect(a.status).toBe(200);
    expect(maxQueuedHere).toBeGreaterThanOrEqual(3);
    expect(maxWaitingThere).toBe(0);
  });

  it('a replica that comes back drains the queue; a pool that stays down answers 503 with Retry-After', async () => {
    const one = await sim(['--max-num-seqs', '1', '--ttft-ms', '300']);
    const two = await sim(['--max-num-seqs', '1', '--ttft-ms', '300']);
    const usage: UsageRecord[] = [];
    const gw = await gateway({
      replicas: [one.url, two.url],
      upstream: { maxNumSeqs: 1, health: { warmUp: false, intervalMs: 100, unhealthyThreshold: 1 } },
      onUsage: (r) => usage.push(r),
    });
    await two.configure({ healthy: false });
    await until(async () => {
      const res = await fetch(`${gw.url}/health`, { headers: { authorization: `Bearer ${OPERATOR}` } });
      const body = (await res.json()) as { replicas: Array<{ state: string }> };
      return body.replicas[0]!.state === 'ready' && body.replicas[1]!.state === 'unhealthy';
    });
    const answers = Array.from({ length: 6 }, (_, i) => ask(gw, 'sk-tera-admission-a', `drain ${i}`));
    await until(async () => (await queued(gw)) >= 4, 5000, 'queue built');
    await two.configure({ healthy: true });
    const done = await Promise.all(answers);
    for (const a of done) expect(a.status).toBe(200);
    const servedByTwo = usage.filter((r) => r.replica === two.url.replace(/\/$/, '')).length;
    expect(servedByTwo).toBeGreaterThanOrEqual(2);

    // Every replica down: a 503 with Retry-After at once, as without admission.
    await one.configure({ healthy: false });
    await two.configure({ healthy: false });
    await until(async () => (await fetch(`${gw.url}/health`)).status === 503, 5000, 'pool down');
    const down = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-tera-admission-a', 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'anyone?' }] }),
    });
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(((await down.json()) as { error: { type: string } }).error.type).toBe('service_unavailable');
  }, 30_000);

  it('overflows to a fallback provider through the same response transforms, and says so', async () => {
    const pool = await sim(['--max-num-seqs', '1', '--ttft-ms', '1000']);
    // An older vLLM as the fallback: it names reasoning `reasoning_content`; callers still get `reasoning`.
    const fallback = await sim(['--reasoning-field', 'reasoning_content']);
    const usage: UsageRecord[] = [];
    const gw = await gateway({
      replicas: [pool.url],
      upstream: { health: false, maxNumSeqs: 1, fallback: { url: `${fallback.url}/v1`, apiKey: 'sk-fallback' } },
      admission: { overflow: { afterMs: 100 } },
      onUsage: (r) => usage.push(r),
    });
    const blocker = ask(gw, 'sk-tera-admission-a', 'blocker');
    await until(async () => (await pool.metric('vllm:num_requests_running')) === 1, 5000, 'blocker running');
    const overflowed = await ask(gw, 'sk-tera-admission-b', 'overflow me');
    expect(overflowed.status).toBe(200);
    expect(overflowed.headers.get('x-tera-served-by')).toBe('fallback');
    expect(Number(overflowed.headers.get('x-tera-queue-ms'))).toBeGreaterThanOrEqual(90);
    const message = (JSON.parse(overflowed.text) as { choices: Array<{ message: Record<string, unknown> }> }).choices[0]!.message;
    expect(typeof message.reasoning).toBe('string');
    expect(message).not.toHaveProperty('reasoning_content');
    expect(await fallback.metric('vllm:prompt_tokens_total')).toBeGreaterThan(0);
    const served = await blocker;
    expect(served.headers.get('x-tera-served-by')).toBeNull();
    await until(() => usage.length === 2);
    expect(usage.find((r) => r.keyId === 'b')).toMatchObject({ servedBy: 'fallback' });
    expect(usage.find((r) => r.keyId === 'a')).toMatchObject({ servedBy: 'pool' });
  });

  it('the fallback gets an OpenAI request: its own key and model name, no vLLM-only fields', async () => {
    const s = await sim(SLOW_ONE_SLOT);
    const fallback = await startCaptureUpstream();
    cleanups.push(() => fallback.close());
    const gw = await gateway({
      replicas: [s.url],
      upstream: { health: false, maxNumSeqs: 1, fallback: { url: `${fallback.url}/v1`, apiKey: 'sk-fallback-key', model: 'gpt-oss-20b' } },
      admission: { overflow: { afterMs: 0 } },
    });
    const { blocker } = await occupy(gw, s);
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-tera-admission-b', 'content-type': 'application/json' },
      body: JSON.stringify({
        model,
        stream: true,
        stream_options: { continuous_usage_stats: true },
        messages: [{ role: 'user', content: 'over' }],
      }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-tera-served-by')).toBe('fallback');
    expect(await res.text()).toContain('data: [DONE]');
    expect(fallback.requests).toHaveLength(1);
    const sent = fallback.requests[0]!;
    expect(sent.headers.authorization).toBe('Bearer sk-fallback-key');
    const body = JSON.parse(sent.body) as Record<string, unknown>;
    expect(body.model).toBe('gpt-oss-20b');
    expect(body).not.toHaveProperty('cache_salt');
    expect(body.stream_options).toEqual({ include_usage: true });
    await blocker;
  });

  it('the openai SDK streams a queued request unchanged, and reads a refusal as a RateLimitError', async () => {
    const s = await sim(SLOW_ONE_SLOT);
    const gw = await gateway({ replicas: [s.url], upstream: { health: false, maxNumSeqs: 1 } });
    const { blocker } = await occupy(gw, s);
    const { data: stream, response } = await gw
      .client('sk-tera-admission-b')
      .chat.completions.create({ model, messages: [{ role: 'user', content: 'queued stream' }], max_tokens: 4, stream: true })
      .withResponse();
    expect(Number(response.headers.get('x-tera-queue-ms'))).toBeGreaterThan(100);
    let text = '';
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as { content?: string; reasoning?: string } | undefined;
      text += (delta?.reasoning ?? '') + (delta?.content ?? '');
    }
    expect(text.length).toBeGreaterThan(0);
    const { blocker: second } = await occupy(gw, s);
    const refused = await gw
      .client('sk-tera-admission-shed')
      .chat.completions.create({ model, messages: [{ role: 'user', content: 'shed' }], max_tokens: 4 })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    expect((refused as InstanceType<typeof OpenAI.RateLimitError>).headers.get('retry-after')).toMatch(/^\d+$/);
    await Promise.all([blocker, second]);
  });

  it('admission off: the replica queues the excess itself, as before', async () => {
    const s = await sim(['--max-num-seqs', '1', '--ttft-ms', '300']);
    const gw = await gateway({ replicas: [s.url], upstream: { health: false, maxNumSeqs: 1 }, admission: false });
    const answers = Array.from({ length: 3 }, (_, i) => ask(gw, 'sk-tera-admission-a', `off ${i}`));
    await until(async () => (await s.metric('vllm:num_requests_waiting')) === 2, 5000, 'the replica queues');
    for (const a of await Promise.all(answers)) {
      expect(a.status).toBe(200);
      expect(a.headers.get('x-tera-queue-ms')).toBeNull();
    }
  });
});
