import { once } from 'node:events';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryResponseStore } from '@tera-gw/responses';
import { MemoryStore } from '@tera-gw/rate-limit';
import type { UsageRecord } from '@tera-gw/telemetry';
import { observeTokenizerPieces, patternCompilations, MAX_PIECE_CHARS } from '@tera-gw/core/internal';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { mountGateway, type Mounted } from '../helpers/mount.js';

/**
 * One tenant against another, on every route: what each row of the hostile-tenant run did, and
 * what it must do now. Stalls are asserted by what is deterministic (a refusal before any
 * compiling, pieces the tokenizer never sees whole, the lease a route holds); the time they cost
 * is `pnpm bench:hostile`'s business.
 */
const model = 'openai/gpt-oss-20b';
const A = { key: 'sk-tera-tenant-a-key', id: 'tenant-a', concurrency: 2, tokensPerSecond: 1e9 };
const B = { key: 'sk-tera-tenant-b-key', id: 'tenant-b', concurrency: 2, tokensPerSecond: 1e9 };
const POOR = {
  key: 'sk-tera-tenant-poor',
  id: 'poor',
  budget: { usd: 0.005, period: 'day' as const },
  concurrency: 8,
  tokensPerSecond: 1e9,
};
const ONE = { key: 'sk-tera-tenant-one', id: 'one', concurrency: 1, tokensPerSecond: 1e9 };

/** Usage as a replica would bill it: a token for every 4 bytes of the messages it was sent. */
function billed(body: string) {
  const parsed = JSON.parse(body) as { messages?: unknown; prompt?: unknown };
  const prompt = Math.ceil(JSON.stringify(parsed.messages ?? parsed.prompt ?? '').length / 4);
  return { prompt_tokens: prompt, completion_tokens: 5, total_tokens: prompt + 5 };
}

const completion = (body: string, message: Record<string, unknown> = { role: 'assistant', content: 'ok' }, finish = 'stop') =>
  JSON.stringify({
    id: 'chatcmpl-tenant',
    object: 'chat.completion',
    created: 1,
    model,
    choices: [{ index: 0, message, finish_reason: finish }],
    usage: billed(body),
  });

/** What the scripted replica answers for the next chat request, when a test wants something else than `ok`. */
let script: ((body: string) => { status?: number; text: string }) | undefined;
/** Answers the replica holds back (requests whose prompt says HOLD-THE-LEASE), to send when a test says so. */
const waiting: Array<() => void> = [];
let replica: CaptureUpstream;
let gw: Mounted;
const usage: UsageRecord[] = [];

beforeAll(async () => {
  replica = await startCaptureUpstream((body, res, path) => {
    if (body.includes('HOLD-THE-LEASE')) {
      waiting.push(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(completion(body));
      });
      return;
    }
    const scripted = script?.(body);
    if (scripted) {
      res.writeHead(scripted.status ?? 200, { 'content-type': 'application/json' });
      return void res.end(scripted.text);
    }
    if (path === '/tokenize') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ count: 3, max_model_len: 131072, tokens: [1, 2, 3], token_strs: null }));
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(completion(body));
  });
  gw = await mountGateway('express', {
    replicas: [replica.url],
    auth: { keys: [A, B, POOR, ONE] },
    upstream: { health: false },
    passthrough: ['/tokenize', '/detokenize', '/v1/completions'],
    onUsage: (record) => usage.push(record),
  });
});
afterAll(async () => {
  await gw.close();
  await replica.close();
});

const send = (path: string, key: { key: string }, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${gw.url}/v1${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key.key}`, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
const errorOf = async (res: Response) =>
  ((await res.json()) as { error: { type: string; code: string | null; param: string | null; message: string } }).error;
const lastUpstream = () => replica.requests.at(-1)!;
const breakers = () => gw.gateway.upstream.replicas().map((r) => r.breaker);

/** A 993-character alternation of `\p{L}` repetitions: about 86,000 RE2 instructions. */
function heavyPattern(from: number): string {
  const parts: string[] = [];
  for (let n = from; parts.join('|').length < 980; n--) parts.push(`\\p{L}{${n}}`);
  return `(?:${parts.join('|')})`;
}
const heavyParameters = {
  type: 'object',
  properties: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`p${i}`, { type: 'string', pattern: heavyPattern(999 - i) }])),
};

describe('untrusted work is bounded before it starts', () => {
  it.each([
    [
      'chat',
      '/chat/completions',
      {
        model,
        messages: [{ role: 'user', content: 'hi' }],
        tools: [{ type: 'function', function: { name: 'f', parameters: heavyParameters } }],
      },
    ],
    ['Responses', '/responses', { model, input: 'hi', tools: [{ type: 'function', name: 'f', parameters: heavyParameters }] }],
    [
      'input_tokens',
      '/responses/input_tokens',
      { model, input: 'hi', tools: [{ type: 'function', name: 'f', parameters: heavyParameters }] },
    ],
  ])('%s: 60 different ~1,000-character patterns -> 400 schema_too_complex, and not one of them compiled', async (_route, path, body) => {
    const before = patternCompilations();
    const seen = replica.requests.length;
    const res = await send(path, A, body);
    expect(res.status).toBe(400);
    expect(await errorOf(res)).toMatchObject({ type: 'invalid_request_error', code: 'schema_too_complex' });
    expect(patternCompilations()).toBe(before);
    expect(replica.requests.length).toBe(seen);
  });

  it("input_tokens counts '!' and a long run of '/', CR, LF in pieces the tokenizer can take: never one longer than MAX_PIECE_CHARS", async () => {
    const pieces: number[] = [];
    observeTokenizerPieces((piece) => pieces.push(piece.length));
    try {
      const res = await send('/responses/input_tokens', A, { model, input: `!${'/\r\n'.repeat(60_000)}` });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { input_tokens: number }).input_tokens).toBeGreaterThan(1000);
    } finally {
      observeTokenizerPieces(undefined);
    }
    expect(pieces.length).toBeGreaterThan(300);
    expect(Math.max(...pieces)).toBeLessThanOrEqual(MAX_PIECE_CHARS);
  });

  it('a long prompt that fits the context by its bytes is never counted on the way in', async () => {
    const pieces: string[] = [];
    observeTokenizerPieces((piece) => pieces.push(piece));
    try {
      const words = Array.from({ length: 15_000 }, (_, i) => `word${i % 97}`).join(' ');
      const res = await send('/chat/completions', A, { model, messages: [{ role: 'user', content: words }], max_tokens: 10 });
      expect(res.status).toBe(200);
    } finally {
      observeTokenizerPieces(undefined);
    }
    // Only the answer's few tokens, never the 100 KB prompt.
    expect(pieces.join('').length).toBeLessThan(100);
  });

  it('input_tokens holds a lease like any route: a key at its concurrency gets 429', async () => {
    // The replica holds this answer back: ONE's only lease stays taken.
    const held = send('/chat/completions', ONE, { model, messages: [{ role: 'user', content: 'HOLD-THE-LEASE' }] });
    for (let i = 0; i < 200 && !waiting.length; i++) await new Promise((r) => setTimeout(r, 10));
    try {
      const counted = await send('/responses/input_tokens', ONE, { model, input: 'how many tokens?' });
      expect(counted.status).toBe(429);
      expect(counted.headers.get('retry-after')).toMatch(/^\d+$/);
    } finally {
      for (const answer of waiting.splice(0)) answer();
      expect((await held).status).toBe(200);
    }
  });
});

describe('stored responses: items, quotas and reads belong to one key', () => {
  it("a client-chosen item id another key also used resolves to the caller's own item; another key's item is not found", async () => {
    const store = async (key: typeof A, text: string) => {
      const res = await send('/responses', key, { model, input: [{ id: 'msg_shared_1', type: 'message', role: 'user', content: text }] });
      expect(res.status).toBe(200);
    };
    await store(A, 'the secret of tenant A');
    await store(B, 'the secret of tenant B');
    const res = await send('/responses', A, { model, input: [{ type: 'item_reference', id: 'msg_shared_1' }] });
    expect(res.status).toBe(200);
    const sent = lastUpstream().body;
    expect(sent).toContain('the secret of tenant A');
    expect(sent).not.toContain('tenant B');
    // B's own item, referenced by A: the same as any id A never stored.
    await send('/responses', B, { model, input: [{ id: 'msg_only_b', type: 'message', role: 'user', content: 'only B wrote this' }] });
    const foreign = await send('/responses', A, { model, input: [{ type: 'item_reference', id: 'msg_only_b' }] });
    expect(foreign.status).toBe(400);
    expect(await errorOf(foreign)).toMatchObject({ code: 'item_not_found', param: 'input[0].id' });
  });

  it('a stored item referenced many times makes the request as large as the replica sees it: over the body limit -> 400', async () => {
    const small = await mountGateway('express', {
      replicas: [replica.url],
      auth: { keys: [A] },
      upstream: { health: false },
      validation: { maxBodyBytes: 64 * 1024 },
    });
    try {
      const stored = await fetch(`${small.url}/v1/responses`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${A.key}` },
        body: JSON.stringify({ model, input: [{ id: 'msg_big', type: 'message', role: 'user', content: 'x'.repeat(20_000) }] }),
      });
      expect(stored.status).toBe(200);
      const seen = replica.requests.length;
      const res = await fetch(`${small.url}/v1/responses`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${A.key}` },
        body: JSON.stringify({ model, input: Array.from({ length: 4 }, () => ({ type: 'item_reference', id: 'msg_big' })) }),
      });
      expect(res.status).toBe(400);
      expect(await errorOf(res)).toMatchObject({ code: 'input_too_large', param: 'input[3].id' });
      expect(replica.requests.length).toBe(seen);
    } finally {
      await small.close();
    }
  });

  it('two parallel 300-byte requests that each reference a stored 140 KB item twice spend at most one request over the budget', async () => {
    const stored = await send('/responses', POOR, {
      model,
      input: [{ id: 'msg_large_history', type: 'message', role: 'user', content: 'history '.repeat(17_500) }],
      max_output_tokens: 16,
    });
    expect(stored.status).toBe(200);
    const before = usage.filter((r) => r.keyId === 'poor').length;
    const ask = () =>
      send('/responses', POOR, {
        model,
        input: [
          { type: 'item_reference', id: 'msg_large_history' },
          { type: 'item_reference', id: 'msg_large_history' },
        ],
        max_output_tokens: 16,
      });
    const answers = await Promise.all([ask(), ask()]);
    const statuses = answers.map((r) => r.status).sort();
    const records = usage.filter((r) => r.keyId === 'poor');
    const spent = records.reduce((sum, r) => sum + (r.costUSD ?? 0), 0);
    const largest = Math.max(...records.map((r) => r.costUSD ?? 0));
    // Storing the item spent half the budget. The first request holds what two copies of the item can cost; the
    // second finds the budget held and is refused.
    expect(statuses).toEqual([200, 429]);
    expect(records.length - before).toBe(1);
    expect(spent).toBeLessThanOrEqual(0.005 + largest);
  });

  it("a tenant filling the store evicts only its own oldest responses: another tenant's response and its chain stay", async () => {
    const bounded = await mountGateway('express', {
      replicas: [replica.url],
      auth: { keys: [A, B] },
      upstream: { health: false },
      responses: { store: new MemoryResponseStore({ maxBytes: 2 * 1024 * 1024, perKey: { maxBytes: 1024 * 1024 } }) },
    });
    const post = (key: typeof A, body: unknown) =>
      fetch(`${bounded.url}/v1/responses`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key.key}` },
        body: JSON.stringify(body),
      });
    try {
      const kept = (await (await post(B, { model, input: 'remember me' })).json()) as { id: string };
      const flood: string[] = [];
      for (let i = 0; i < 20; i++)
        flood.push(((await (await post(A, { model, input: `${i} ${' '.repeat(300_000)}` })).json()) as { id: string }).id);
      const read = (key: typeof A, id: string) =>
        fetch(`${bounded.url}/v1/responses/${id}`, { headers: { authorization: `Bearer ${key.key}` } });
      expect((await read(B, kept.id)).status).toBe(200);
      expect((await post(B, { model, previous_response_id: kept.id, input: 'and again' })).status).toBe(200);
      // The flood kept what its own quota holds: its newest, never more than 1 MiB.
      expect((await read(A, flood[0]!)).status).toBe(404);
      expect((await read(A, flood[19]!)).status).toBe(200);
    } finally {
      await bounded.close();
    }
  });

  it('a stored response is read back as the text it was stored as (never parsed again), under the limiter', async () => {
    const created = (await (await send('/responses', A, { model, input: `big ${'y'.repeat(400_000)}` })).json()) as { id: string };
    const parse = JSON.parse;
    let parsedLarge = 0;
    JSON.parse = ((text: string, reviver?: Parameters<typeof JSON.parse>[1]) => {
      if (typeof text === 'string' && text.length > 100_000) parsedLarge++;
      return parse(text, reviver);
    }) as typeof JSON.parse;
    let text: string;
    try {
      const res = await fetch(`${gw.url}/v1/responses/${created.id}`, { headers: { authorization: `Bearer ${A.key}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-ratelimit-limit-requests')).toBe('2');
      text = await res.text();
    } finally {
      JSON.parse = parse;
    }
    expect(parsedLarge).toBe(0);
    expect((JSON.parse(text) as { id: string }).id).toBe(created.id);
    const other = await fetch(`${gw.url}/v1/responses/${created.id}`, { headers: { authorization: `Bearer ${B.key}` } });
    expect(other.status).toBe(404);
  });
});

describe('attempts that were retried count against the key', () => {
  it('an unsatisfiable strict json_schema: three attempts, all three charged to the token rate, the caller billed none', async () => {
    const clock = 1_000_000;
    const store = new MemoryStore(() => clock);
    const strict = await mountGateway('express', {
      replicas: [replica.url],
      auth: { keys: [{ key: 'sk-tera-strict-key', id: 'strict', tokensPerSecond: 1000 }] },
      upstream: { health: false },
      rateLimit: { store, burstSeconds: 100 },
      onUsage: (record) => usage.push(record),
    });
    script = (body) => ({ text: completion(body, { role: 'assistant', content: '{"answer": 42}' }) });
    try {
      const body = {
        model,
        max_tokens: 100,
        messages: [{ role: 'user', content: 'Give me a name.' }],
        response_format: {
          type: 'json_schema',
          json_schema: {
            name: 'n',
            strict: true,
            schema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] },
          },
        },
      };
      const res = await fetch(`${strict.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-tera-strict-key' },
        body: JSON.stringify(body),
      });
      expect(res.status).toBe(500);
      expect(await errorOf(res)).toMatchObject({ code: 'schema_violation' });
      const attempts = replica.requests.slice(-3).map((r) => billed(r.body).total_tokens);
      const charged = attempts.reduce((a, b) => a + b, 0);
      // The clock stands still: what is left of the bucket is exact.
      script = undefined;
      const next = await fetch(`${strict.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-tera-strict-key' },
        body: JSON.stringify({ model, max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(next.status).toBe(200);
      const nextCharge =
        Math.ceil(Buffer.byteLength(JSON.stringify({ model, max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] })) / 4) + 100;
      expect(Number(next.headers.get('x-ratelimit-remaining-tokens'))).toBe(100_000 - charged - nextCharge);
    } finally {
      script = undefined;
      await strict.close();
    }
  });

  it('a length stop with reasoning and no text is an answer, not an empty completion: one attempt, 200', async () => {
    const seen = replica.requests.length;
    script = (body) => ({
      text: completion(body, { role: 'assistant', content: null, reasoning: 'Thinking about it at length' }, 'length'),
    });
    try {
      const res = await send('/chat/completions', A, { model, max_tokens: 5, messages: [{ role: 'user', content: 'think' }] });
      expect(res.status).toBe(200);
      const answer = (await res.json()) as { choices: Array<{ finish_reason: string; message: { reasoning?: string } }> };
      expect(answer.choices[0]).toMatchObject({ finish_reason: 'length', message: { reasoning: 'Thinking about it at length' } });
    } finally {
      script = undefined;
    }
    expect(replica.requests.length - seen).toBe(1);
  });
});

describe("a caller's cache_salt", () => {
  it('is never used as sent: two tenants choosing the same salt get different partitions', async () => {
    await send('/chat/completions', A, { model, messages: [{ role: 'user', content: 'hi' }], cache_salt: 'shared-salt' });
    const saltA = (JSON.parse(lastUpstream().body) as { cache_salt: string }).cache_salt;
    await send('/chat/completions', B, { model, messages: [{ role: 'user', content: 'hi' }], cache_salt: 'shared-salt' });
    const saltB = (JSON.parse(lastUpstream().body) as { cache_salt: string }).cache_salt;
    expect(saltA).not.toBe('shared-salt');
    expect(saltB).not.toBe('shared-salt');
    expect(saltA).not.toBe(saltB);
  });
});

describe('passthrough: a guarded proxy', () => {
  it('a body that is not declared JSON -> 415, and the replica is never blamed: breakers stay closed', async () => {
    const seen = replica.requests.length;
    for (let i = 0; i < 10; i++) {
      const res = await send('/tokenize', A, JSON.stringify({ model, prompt: 'hi' }), { 'content-type': 'text/plain' });
      expect(res.status).toBe(415);
      expect(await errorOf(res)).toMatchObject({ type: 'invalid_request_error', code: 'unsupported_media_type' });
    }
    const none = await fetch(`${gw.url}/v1/tokenize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${A.key}` },
      body: new Blob([JSON.stringify({ model, prompt: 'hi' })]),
    });
    expect(none.status).toBe(415);
    expect(replica.requests.length).toBe(seen);
    expect(breakers()).toEqual(['closed']);
  });

  it('a compressed body -> 415 without decompressing it', async () => {
    const res = await send('/tokenize', A, Buffer.alloc(64 * 1024, 7).toString('latin1'), { 'content-encoding': 'br' });
    expect(res.status).toBe(415);
    expect(await errorOf(res)).toMatchObject({ code: 'unsupported_encoding' });
  });

  it('Expect: 100-continue is answered by the gateway; the replica gets the body and none of the caller headers', async () => {
    const { port } = new URL(gw.url);
    const socket = connect(Number(port), '127.0.0.1');
    await once(socket, 'connect');
    const body = JSON.stringify({ model, prompt: 'continue me' });
    socket.write(
      [
        'POST /v1/tokenize HTTP/1.1',
        `Host: 127.0.0.1:${port}`,
        'Content-Type: application/json',
        `Content-Length: ${Buffer.byteLength(body)}`,
        'Expect: 100-continue',
        `Authorization: Bearer ${A.key}`,
        'Cookie: session=tenant-a-cookie',
        'X-Forwarded-For: 10.9.8.7',
        'Traceparent: 00-not-a-valid-trace-context',
        'Connection: close',
        '',
        '',
      ].join('\r\n'),
    );
    let received = '';
    socket.on('data', (d: Buffer) => {
      received += d.toString();
      if (received.startsWith('HTTP/1.1 100') && !received.includes('sent')) {
        received += '\n(sent)';
        socket.write(body);
      }
    });
    await once(socket, 'close');
    expect(received).toMatch(/^HTTP\/1\.1 100 Continue/);
    expect(received).toMatch(/HTTP\/1\.1 200 OK/);
    const seen = lastUpstream();
    expect(seen.path).toBe('/tokenize');
    expect(JSON.parse(seen.body)).toEqual({ model, prompt: 'continue me' });
    for (const header of ['expect', 'authorization', 'cookie', 'x-forwarded-for', 'traceparent'])
      expect(seen.headers[header], header).toBeUndefined();
    expect(JSON.stringify(seen.headers)).not.toContain(A.key);
  });

  it('completions from a key whose budget is spent -> 429; max_tokens over the cap -> 400; a billed completion is recorded with its cost', async () => {
    const tooMany = await send('/completions', A, { model, prompt: 'hi', max_tokens: 1_000_000 });
    expect(tooMany.status).toBe(400);
    expect(await errorOf(tooMany)).toMatchObject({ param: 'max_tokens' });
    const batch = await send('/completions', A, { model, prompt: ['a', 'b'] });
    expect(batch.status).toBe(400);
    const before = usage.length;
    const ok = await send('/completions', A, { model, prompt: 'hi', max_tokens: 50 });
    expect(ok.status).toBe(200);
    const record = usage.slice(before).find((r) => r.keyId === 'tenant-a')!;
    expect(record.costUSD).toBeGreaterThan(0);
    expect(record.promptTokens).toBeGreaterThan(0);
    // POOR spent its budget in the test above.
    const spent = await send('/completions', POOR, { model, prompt: 'hi', max_tokens: 50 });
    expect(spent.status).toBe(429);
    expect(await errorOf(spent)).toMatchObject({ type: 'insufficient_quota', code: 'budget_exceeded' });
  });

  it('a streamed completion is billed from the usage the gateway asked for, and the caller sees none it did not ask for', async () => {
    const usageOf = (n: number) => ({ prompt_tokens: 7, completion_tokens: n, total_tokens: 7 + n });
    const event = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`;
    const completionChunk = (text: string, n: number, finish: string | null = null) =>
      event({
        id: 'cmpl-1',
        object: 'text_completion',
        created: 1,
        model,
        choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
        usage: usageOf(n),
      });
    let sent: Record<string, unknown> | undefined;
    script = (body) => {
      sent = JSON.parse(body) as Record<string, unknown>;
      return { text: '' };
    };
    const streamed = `${completionChunk('Hel', 1)}${completionChunk('lo', 2, 'stop')}${event({ id: 'cmpl-1', object: 'text_completion', created: 1, model, choices: [], usage: usageOf(2) })}data: [DONE]\n\n`;
    const capture = await startCaptureUpstream((body, res) => {
      sent = JSON.parse(body) as Record<string, unknown>;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(streamed);
    });
    const records: UsageRecord[] = [];
    const mounted = await mountGateway('express', {
      replicas: [capture.url],
      auth: { keys: [A] },
      upstream: { health: false },
      passthrough: ['/v1/completions'],
      onUsage: (r) => records.push(r),
    });
    try {
      const res = await fetch(`${mounted.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${A.key}` },
        body: JSON.stringify({ model, prompt: 'Say hello', stream: true, max_tokens: 20 }),
      });
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).toContain('"text":"Hel"');
      expect(text).not.toContain('usage');
      expect(text.trim().endsWith('data: [DONE]')).toBe(true);
      expect(sent?.stream_options).toEqual({ include_usage: true, continuous_usage_stats: true });
      await new Promise((r) => setTimeout(r, 50));
      expect(records.at(-1)).toMatchObject({ keyId: 'tenant-a', promptTokens: 7, completionTokens: 2, stream: true });
    } finally {
      script = undefined;
      await mounted.close();
      await capture.close();
    }
  });

  it("upstream 500s are the request's, not the replica's: breakers stay closed", async () => {
    script = () => ({ status: 500, text: 'Traceback: internal at 10.0.0.5 sk-upstream-secret' });
    try {
      for (let i = 0; i < 10; i++) {
        const res = await send('/detokenize', A, { model, tokens: [1, 2, 3] });
        expect(res.status).toBe(500);
        const text = await res.text();
        expect(text).not.toContain('Traceback');
        expect(text).not.toContain('sk-upstream');
      }
    } finally {
      script = undefined;
    }
    expect(breakers()).toEqual(['closed']);
  });

  it('without an upstream key, the caller key still never reaches the replica', async () => {
    await send('/tokenize', A, { model, prompt: 'no upstream key here' });
    expect(lastUpstream().headers.authorization).toBeUndefined();
  });
});

describe('no route answers in anything but the error shape', () => {
  it('headers over the server limit -> a JSON 431 from the clientError handler', async () => {
    const { clientErrorHandler } = await import('@tera-gw/gateway');
    const { createServer } = await import('node:http');
    const server = createServer((_req, res) => res.end('ok'));
    server.on('clientError', clientErrorHandler());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { 'x-big': 'a'.repeat(20_000) } });
      expect(res.status).toBe(431);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await errorOf(res)).toMatchObject({ type: 'invalid_request_error', code: 'headers_too_large' });
    } finally {
      server.close();
    }
  });
});
