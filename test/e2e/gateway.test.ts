import { Validator } from '@cfworker/json-schema';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatCompletionAccumulator } from '@tera-gw/tool-calls';
import { mountGateway, type Framework, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';

const model = 'openai/gpt-oss-20b';
const keys = [
  { key: 'sk-tera-test-key-1', id: 'team-a', models: '*' as const, concurrency: 4, tokensPerSecond: 100_000 },
  { key: 'sk-tera-other-model', id: 'team-b', models: ['openai/gpt-oss-120b'] },
  { key: 'sk-tera-expired-key', id: 'old', expiresAt: '2020-01-01T00:00:00Z' },
  { key: 'sk-tera-one-at-a-time', id: 'single', concurrency: 1 },
  { key: 'sk-tera-operator-key', id: 'ops', operator: true },
];
const weather = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'Get the current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
  },
};

let sims: SimProcess[];
beforeAll(async () => {
  sims = await Promise.all([spawnSim(['--itl-ms', '1']), spawnSim(['--itl-ms', '1'])]);
});
afterAll(async () => {
  await Promise.all(sims.map((s) => s.kill()));
});

describe.each<Framework>(['express', 'koa'])('the gateway mounted in %s, with the openai SDK', (framework) => {
  let gw: Mounted;
  let client: OpenAI;
  beforeAll(async () => {
    gw = await mountGateway(framework, { replicas: sims.map((s) => s.url), auth: { keys }, upstream: { health: { intervalMs: 200 } } });
    await gw.gateway.ready();
    client = gw.client();
  });
  afterAll(() => gw.close());

  it('answers with reasoning and content; usage; the request id header', async () => {
    const { data, response } = await client.chat.completions
      .create({ model, messages: [{ role: 'user', content: 'What is 2+2?' }], seed: 1 })
      .withResponse();
    const message = data.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning?: string; reasoning_content?: string };
    expect(message.content!.length).toBeGreaterThan(10);
    expect(message.reasoning).toMatch(/^The user asks/);
    expect(message).not.toHaveProperty('reasoning_content');
    expect(data.usage!.total_tokens).toBe(data.usage!.prompt_tokens + data.usage!.completion_tokens);
    expect(response.headers.get('x-tera-request-id')).toMatch(/^req_/);
    expect(data.id).toBe(`chatcmpl-${response.headers.get('x-tera-request-id')}`);
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('4');
  });

  it('streams: reasoning deltas then content deltas, summed; the accumulator agrees', async () => {
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Stream please' }],
      seed: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    let reasoning = '';
    let content = '';
    let sawContent = false;
    const acc = new ChatCompletionAccumulator();
    for await (const chunk of stream) {
      acc.push(chunk);
      const delta = chunk.choices[0]?.delta as { content?: string; reasoning?: string } | undefined;
      if (delta?.reasoning) {
        expect(sawContent).toBe(false);
        reasoning += delta.reasoning;
      }
      if (delta?.content) {
        sawContent = true;
        content += delta.content;
      }
    }
    const once = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Stream please' }], seed: 2 });
    expect(content).toBe(once.choices[0]!.message.content);
    expect(reasoning).toBe((once.choices[0]!.message as { reasoning?: string }).reasoning);
    const final = acc.result();
    expect(final.choices[0]!.message.reasoning).toBe(reasoning);
    expect(final.usage!.total_tokens).toBeGreaterThan(0);
  });

  it('a tool-call round trip', async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is the weather in Paris?' }];
    const first = await client.chat.completions.stream({ model, messages, tools: [weather] }).finalChatCompletion();
    expect(first.choices[0]!.finish_reason).toBe('tool_calls');
    const call = first.choices[0]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toHaveProperty('city');
    messages.push(first.choices[0]!.message, { role: 'tool', tool_call_id: call.id, content: '{"temperature_c": 18}' });
    const second = await client.chat.completions.create({ model, messages, tools: [weather] });
    expect(second.choices[0]!.finish_reason).toBe('stop');
    expect(second.choices[0]!.message.content).toContain('18');
  });

  it('structured output: json_schema content validates', async () => {
    const schema = {
      type: 'object',
      properties: { answer: { type: 'string' }, score: { type: 'integer', minimum: 1, maximum: 5 } },
      required: ['answer', 'score'],
      additionalProperties: false,
    };
    const res = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'rate it' }],
      response_format: { type: 'json_schema', json_schema: { name: 'rating', schema, strict: true } },
    });
    expect(new Validator(schema as never).validate(JSON.parse(res.choices[0]!.message.content!)).valid).toBe(true);
  });

  it.each([
    ['no key', undefined, 401, 'authentication_error'],
    ['an unknown key', 'sk-tera-not-a-key-at-all', 401, 'authentication_error'],
    ['an expired key', 'sk-tera-expired-key', 401, 'authentication_error'],
    ['a key scoped to another model', 'sk-tera-other-model', 403, 'permission_error'],
  ])('%s -> %i %s', async (_name, key, status, type) => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(status);
    const body = (await res.json()) as { error: { type: string; message: string } };
    expect(body.error.type).toBe(type);
    if (key) expect(body.error.message).not.toContain(key);
    if (status === 401) expect(res.headers.get('www-authenticate')).toBe('Bearer');
    expect(res.headers.get('x-tera-request-id')).toMatch(/^req_/);
  });

  it('the SDK raises typed errors: 400 with param, 404 model', async () => {
    await expect(
      client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], temperature: 3 }),
    ).rejects.toMatchObject({ status: 400, param: 'temperature', type: 'invalid_request_error' });
    await expect(client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
      status: 404,
      type: 'model_not_found',
    });
    await expect(client.embeddings.create({ model, input: 'x' })).rejects.toMatchObject({ status: 404, code: 'endpoint_not_offered' });
  });

  it('models list and model by id', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual([model]);
    expect((await client.models.retrieve(model)).id).toBe(model);
  });

  it('the concurrency limit: a second request in flight -> 429 with Retry-After; after, admitted', async () => {
    const single = gw.client('sk-tera-one-at-a-time');
    const stream = await single.chat.completions.create({ model, messages: [{ role: 'user', content: 'long' }], stream: true });
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-tera-one-at-a-time' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('rate_limit_error');
    for await (const _ of stream) void _;
    await new Promise((r) => setTimeout(r, 20));
    await expect(single.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] })).resolves.toBeTruthy();
  });

  it('/health: the status for anyone, replica states for an operator key only', async () => {
    for (const authorization of [undefined, 'Bearer sk-tera-test-key-1', 'Bearer sk-tera-wrong-key-00', 'Basic x']) {
      const res = await fetch(`${gw.url}/health`, authorization ? { headers: { authorization } } : {});
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok' });
    }
    const res = await fetch(`${gw.url}/health`, { headers: { authorization: 'Bearer sk-tera-operator-key' } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { status: string; replicas: Array<{ state: string; url: string }> };
    expect(body.status).toBe('ok');
    expect(body.replicas.map((r) => r.state)).toEqual(['ready', 'ready']);
    expect(body.replicas.map((r) => r.url)).toEqual(sims.map((s) => s.url));
  });
});

describe('simulator flavours through the gateway, read by the SDK stream helper', () => {
  const flavours: Array<[string, string[]]> = [
    ['reasoning', ['--reasoning-field', 'reasoning']],
    ['reasoning_content', ['--reasoning-field', 'reasoning_content']],
    ['both fields', ['--reasoning-field', 'both']],
    ['single-delta tool calls', ['--tool-call-quirk', 'single-delta']],
    ['repeated names', ['--tool-call-quirk', 'repeat-name']],
    ['stop instead of tool_calls', ['--tool-call-quirk', 'stop-finish']],
    ['every quirk, old field', ['--reasoning-field', 'reasoning_content', '--tool-call-quirk', 'single-delta,repeat-name,stop-finish']],
  ];
  it.each(flavours)('%s', async (_name, args) => {
    const sim = await spawnSim(args);
    const reference = await spawnSim([]);
    const gw = await mountGateway('express', { replicas: [sim.url], auth: { keys }, upstream: { health: { intervalMs: 200 } } });
    try {
      await gw.gateway.ready();
      const client = gw.client();
      const direct = new OpenAI({ baseURL: `${reference.url}/v1`, apiKey: 'x' });
      const body = { model, messages: [{ role: 'user' as const, content: 'weather in Lima?' }], tools: [weather], seed: 9 };
      const viaGateway = await client.chat.completions.stream(body).finalChatCompletion();
      const expected = await direct.chat.completions.stream(body).finalChatCompletion();
      expect(viaGateway.choices[0]!.finish_reason).toBe('tool_calls');
      expect(viaGateway.choices[0]!.message.tool_calls).toEqual(expected.choices[0]!.message.tool_calls);
      // Reasoning summed from deltas, in the field the gateway promises.
      const stream = await client.chat.completions.create({ ...body, tools: undefined, stream: true });
      let reasoning = '';
      for await (const chunk of stream) {
        const delta = chunk.choices[0]?.delta as { reasoning?: string; reasoning_content?: string } | undefined;
        expect(delta?.reasoning_content).toBeUndefined();
        reasoning += delta?.reasoning ?? '';
      }
      const plain = await direct.chat.completions.create({ ...body, tools: undefined });
      expect(reasoning).toBe((plain.choices[0]!.message as { reasoning?: string }).reasoning);
    } finally {
      await gw.close();
      await sim.kill();
      await reference.kill();
    }
  });
});
