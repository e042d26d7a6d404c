import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { freePort } from '../helpers/ports.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';

const model = 'openai/gpt-oss-20b';
const keys = [
  { key: 'sk-tera-pass-key-1', id: 'team-a', models: '*' as const, concurrency: 1 },
  { key: 'sk-tera-pass-other', id: 'team-b', models: ['openai/gpt-oss-120b'] },
];

let sims: SimProcess[];
let gw: Mounted;
const post = (path: string, body: unknown, key: string | null = keys[0]!.key) =>
  fetch(`${gw.url}/v1${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(body),
  });
const errorOf = async (res: Response) => ((await res.json()) as { error: { type: string; code: string | null; message: string } }).error;

beforeAll(async () => {
  sims = await Promise.all([spawnSim(['--itl-ms', '20']), spawnSim(['--itl-ms', '20'])]);
  gw = await mountGateway('express', {
    replicas: sims.map((s) => s.url),
    auth: { keys },
    upstream: { health: { intervalMs: 100, unhealthyThreshold: 1 } },
    passthrough: ['/tokenize', '/detokenize'],
  });
  await gw.gateway.ready();
});
afterAll(async () => {
  await gw.close();
  await Promise.all(sims.map((s) => s.kill()));
});

describe('vLLM pass-through (http-proxy-middleware)', () => {
  it('tokenize and detokenize in vLLM shapes, with the request id header', async () => {
    const res = await post('/tokenize', { model, prompt: 'Hello tokenizer world' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-tera-request-id')).toMatch(/^req_/);
    const tokens = (await res.json()) as { count: number; max_model_len: number; tokens: number[]; token_strs: null };
    expect(tokens.count).toBe(tokens.tokens.length);
    expect(tokens.count).toBeGreaterThan(1);
    expect(tokens.max_model_len).toBe(131_072);
    const back = await post('/detokenize', { model, tokens: tokens.tokens });
    expect(await back.json()).toEqual({ prompt: 'Hello tokenizer world' });
  });

  it('a path not listed stays 404 in the error shape; a wrong method is 405', async () => {
    const res = await post('/pooling', { model, input: 'x' });
    expect(res.status).toBe(404);
    expect(await errorOf(res)).toMatchObject({ type: 'invalid_request_error', code: 'unknown_url' });
    const get = await fetch(`${gw.url}/v1/tokenize`, { headers: { authorization: `Bearer ${keys[0]!.key}` } });
    expect(get.status).toBe(405);
  });

  it('auth, scope and model in front: 401, 403, 404', async () => {
    expect((await post('/tokenize', { model, prompt: 'x' }, null)).status).toBe(401);
    const scoped = await post('/tokenize', { model, prompt: 'x' }, keys[1]!.key);
    expect(scoped.status).toBe(403);
    expect(await errorOf(scoped)).toMatchObject({ type: 'permission_error' });
    const other = await post('/tokenize', { model: 'gpt-4o', prompt: 'x' });
    expect(other.status).toBe(404);
    expect(await errorOf(other)).toMatchObject({ type: 'model_not_found' });
  });

  it("shares the key's concurrency limit with chat: 429 with Retry-After while a stream holds the lease", async () => {
    const stream = await post('/chat/completions', { model, messages: [{ role: 'user', content: 'a long answer please' }], stream: true });
    expect(stream.status).toBe(200);
    const limited = await post('/tokenize', { model, prompt: 'x' });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toMatch(/^\d+$/);
    await stream.text();
    await new Promise((r) => setTimeout(r, 50));
    expect((await post('/tokenize', { model, prompt: 'x' })).status).toBe(200);
  });

  it('a dead replica leaves rotation: every request is served by the other', async () => {
    const [dead] = sims;
    await dead!.kill();
    for (let i = 0; i < 100 && gw.gateway.upstream.replicas()[0]!.state !== 'unhealthy'; i++) await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 8; i++) expect((await post('/tokenize', { model, prompt: `request ${i}` })).status).toBe(200);
    sims[0] = await spawnSim(['--itl-ms', '20'], dead!.port);
  });
});

describe('pass-through upstream hygiene', () => {
  let capture: CaptureUpstream;
  let mounted: Mounted;
  beforeAll(async () => {
    capture = await startCaptureUpstream();
    mounted = await mountGateway('express', {
      replicas: [capture.url],
      auth: { keys },
      upstream: { health: false, apiKey: 'upstream-secret-key' },
      passthrough: ['/tokenize', '/v1/completions'],
    });
  });
  afterAll(async () => {
    await mounted.close();
    await capture.close();
  });

  it('the caller key and OpenAI headers never reach the replica; the upstream key and the request id do; /v1 paths keep theirs', async () => {
    const res = await fetch(`${mounted.url}/v1/completions?trace=1`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${keys[0]!.key}`,
        'openai-organization': 'org-1',
        cookie: 'a=b',
      },
      body: JSON.stringify({ model, prompt: 'hi' }),
    });
    expect(res.status).toBe(200);
    const seen = capture.requests.at(-1)!;
    expect(seen.headers.authorization).toBe('Bearer upstream-secret-key');
    expect(JSON.stringify(seen.headers)).not.toContain(keys[0]!.key);
    expect(seen.headers['openai-organization']).toBeUndefined();
    expect(seen.headers.cookie).toBeUndefined();
    expect(seen.headers['x-request-id']).toBe(res.headers.get('x-tera-request-id'));
    // Raw completions carry the tenant's cache salt like chat does (an HMAC, never the key).
    expect(JSON.parse(seen.body)).toEqual({ model, prompt: 'hi', max_tokens: 16, cache_salt: expect.stringMatching(/^[\w-]{43}$/) });
    await fetch(`${mounted.url}/v1/tokenize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${keys[0]!.key}` },
      body: JSON.stringify({ model, prompt: 'hi' }),
    });
    expect(JSON.parse(capture.requests.at(-1)!.body)).toEqual({ model, prompt: 'hi' });
  });

  it('an unreachable replica: 503 in the error shape with Retry-After', async () => {
    const gone = await mountGateway('express', {
      replicas: [`http://127.0.0.1:${await freePort()}`],
      auth: { keys },
      upstream: { health: false },
      passthrough: ['/tokenize'],
    });
    try {
      const res = await fetch(`${gone.url}/v1/tokenize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${keys[0]!.key}` },
        body: JSON.stringify({ model, prompt: 'x' }),
      });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('2');
      expect(await errorOf(res)).toMatchObject({ type: 'service_unavailable', code: 'upstream_unreachable' });
    } finally {
      await gone.close();
    }
  });
});
