import OpenAI from 'openai';
import type { Response, ResponseInputItem, ResponseStreamEvent } from 'openai/resources/responses/responses';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountGateway, type Framework, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';

const model = 'openai/gpt-oss-20b';
const keys = [
  { key: 'sk-tera-test-key-1', id: 'team-a', models: '*' as const, concurrency: 8, tokensPerSecond: 1_000_000 },
  { key: 'sk-tera-test-key-2', id: 'team-b', models: '*' as const, concurrency: 8, tokensPerSecond: 1_000_000 },
  { key: 'sk-tera-other-model', id: 'team-c', models: ['openai/gpt-oss-120b'] },
];
const weather = {
  type: 'function' as const,
  name: 'get_weather',
  description: 'Get the current weather for a city',
  strict: false,
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
};

let sims: SimProcess[];
beforeAll(async () => {
  sims = await Promise.all([spawnSim(['--itl-ms', '1']), spawnSim(['--itl-ms', '1'])]);
});
afterAll(async () => {
  await Promise.all(sims.map((s) => s.kill()));
});

function outputOf(response: Response) {
  const reasoning = response.output.find((i) => i.type === 'reasoning');
  const message = response.output.find((i) => i.type === 'message');
  const calls = response.output.filter((i) => i.type === 'function_call');
  return {
    reasoning: reasoning?.content?.map((c) => c.text).join('') ?? '',
    text: message?.content.map((c) => (c.type === 'output_text' ? c.text : '')).join('') ?? '',
    calls,
    reasoningItem: reasoning,
  };
}

async function errorOf(promise: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof OpenAI.APIError) return err;
    throw err;
  }
  throw new Error('expected an API error');
}

describe.each<Framework>(['express', 'koa'])('the Responses API mounted in %s, with the openai SDK', (framework) => {
  let gw: Mounted;
  let client: OpenAI;
  let other: OpenAI;
  beforeAll(async () => {
    gw = await mountGateway(framework, {
      replicas: sims.map((s) => s.url),
      auth: { keys },
      upstream: { health: { intervalMs: 200 } },
      responses: { secrets: ['a-test-secret-of-32-characters!!'] },
    });
    await gw.gateway.ready();
    client = gw.client();
    other = gw.client('sk-tera-test-key-2');
  });
  afterAll(() => gw.close());

  it('creates a response: reasoning item, message, usage with reasoning tokens, the request id header', async () => {
    const { data, response } = await client.responses.create({ model, input: 'What is 2+2?', reasoning: { effort: 'low' } }).withResponse();
    expect(data.id).toMatch(/^resp_[0-9a-f]{48}$/);
    expect(data.object).toBe('response');
    expect(data.status).toBe('completed');
    expect(data.output.map((i) => i.type)).toEqual(['reasoning', 'message']);
    const { reasoning, text, reasoningItem } = outputOf(data);
    expect(reasoningItem!.id).toMatch(/^rs_/);
    expect(reasoning).toMatch(/^The user asks: "What is 2\+2\?"/);
    expect(text.length).toBeGreaterThan(10);
    expect(data.output_text).toBe(text);
    expect(data.usage!.output_tokens_details.reasoning_tokens).toBeGreaterThan(0);
    expect(data.usage!.output_tokens_details.reasoning_tokens).toBeLessThan(data.usage!.output_tokens);
    expect(data.usage!.total_tokens).toBe(data.usage!.input_tokens + data.usage!.output_tokens);
    expect(data.reasoning).toEqual({ effort: 'low', summary: null });
    expect(response.headers.get('x-tera-request-id')).toMatch(/^req_/);
  });

  it('streams the event grammar; sequence numbers from 0; responses.stream() agrees with the deltas', async () => {
    const stream = client.responses.stream({ model, input: 'Tell me about caches', reasoning: { effort: 'low' } });
    const events: ResponseStreamEvent[] = [];
    let reasoning = '';
    let text = '';
    for await (const event of stream) {
      events.push(event);
      if (event.type === 'response.reasoning_text.delta') reasoning += event.delta;
      if (event.type === 'response.output_text.delta') text += event.delta;
    }
    const final = await stream.finalResponse();
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const types = [...new Set(events.map((e) => e.type))];
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.reasoning_text.delta',
      'response.reasoning_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_text.delta',
      'response.output_text.done',
      'response.completed',
    ]);
    expect(outputOf(final).reasoning).toBe(reasoning);
    expect(outputOf(final).text).toBe(text);
    expect(final.status).toBe('completed');
    expect(final.usage!.output_tokens).toBeGreaterThan(0);
    const done = events.find((e) => e.type === 'response.output_text.done');
    expect(done && 'text' in done ? done.text : undefined).toBe(text);
  });

  it('reasoning.summary asked for: the reasoning text is the summary, streamed as summary events too; not asked: no summary', async () => {
    const plain = await client.responses.create({ model, input: 'What is 2+2?', reasoning: { effort: 'low' } });
    expect(outputOf(plain).reasoningItem!.summary).toEqual([]);
    for (const summary of ['auto', 'concise', 'detailed'] as const) {
      const data = await client.responses.create({ model, input: 'What is 2+2?', reasoning: { effort: 'low', summary } });
      const { reasoning, reasoningItem } = outputOf(data);
      expect(reasoning.length).toBeGreaterThan(0);
      expect(reasoningItem!.summary).toEqual([{ type: 'summary_text', text: reasoning }]);
      expect(data.reasoning?.summary).toBe(summary);
    }
    const stream = client.responses.stream({ model, input: 'What is 2+2?', reasoning: { effort: 'low', summary: 'auto' } });
    const types: string[] = [];
    let summaryDeltas = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.reasoning_summary_text.delta') summaryDeltas += event.delta;
    }
    const final = await stream.finalResponse();
    const { reasoning, reasoningItem } = outputOf(final);
    expect(summaryDeltas).toBe(reasoning);
    expect(reasoningItem!.summary).toEqual([{ type: 'summary_text', text: reasoning }]);
    const at = (type: string) => types.indexOf(type);
    expect(at('response.reasoning_summary_part.added')).toBeGreaterThan(at('response.output_item.added'));
    expect(at('response.reasoning_summary_text.done')).toBeGreaterThan(at('response.reasoning_summary_text.delta'));
    expect(at('response.reasoning_summary_part.done')).toBeLessThan(types.lastIndexOf('response.output_item.done'));
  });

  it('a tool call round trip, stateful: previous_response_id carries the conversation and its reasoning', async () => {
    const first = await client.responses.create({
      model,
      input: 'What is the weather in Paris?',
      tools: [weather],
      reasoning: { effort: 'low' },
    });
    const { calls } = outputOf(first);
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.id).toMatch(/^fc_/);
    expect(call.name).toBe('get_weather');
    expect(JSON.parse(call.arguments)).toEqual({ city: 'Paris' });
    const second = await client.responses.create({
      model,
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temperature_c":18}' }],
      tools: [weather],
    });
    expect(second.previous_response_id).toBe(first.id);
    expect(outputOf(second).calls).toHaveLength(0);
    expect(outputOf(second).text.length).toBeGreaterThan(0);
    // The history was replayed: the prompt is longer than the first one's by at least the call and its output.
    expect(second.usage!.input_tokens).toBeGreaterThan(first.usage!.input_tokens + 10);
    const items = await client.responses.inputItems.list(second.id, { order: 'asc', limit: 100 });
    expect(items.data.map((i) => i.type)).toEqual(['message', 'reasoning', 'function_call', 'function_call_output']);
  });

  it('a tool call round trip, stateless: the output items sent back, streaming', async () => {
    const input: ResponseInputItem[] = [{ role: 'user', content: 'What is the weather in Paris?' }];
    const stream = client.responses.stream({ model, input, tools: [weather], store: false });
    const argDeltas: string[] = [];
    for await (const event of stream) if (event.type === 'response.function_call_arguments.delta') argDeltas.push(event.delta);
    const first = await stream.finalResponse();
    const call = outputOf(first).calls[0]!;
    expect(argDeltas.join('')).toBe(call.arguments);
    expect((first as unknown as { store: boolean }).store).toBe(false);
    const second = await client.responses.create({
      model,
      input: [...input, ...(first.output as ResponseInputItem[]), { type: 'function_call_output', call_id: call.call_id, output: '18 C' }],
      tools: [weather],
      store: false,
    });
    expect(outputOf(second).text.length).toBeGreaterThan(0);
    expect(await errorOf(client.responses.retrieve(first.id))).toMatchObject({ status: 404 });
  });

  it('structured output with a strict json_schema', async () => {
    const schema = {
      type: 'object',
      properties: { city: { type: 'string' }, temperature: { type: 'number' } },
      required: ['city', 'temperature'],
      additionalProperties: false,
    };
    const res = await client.responses.create({
      model,
      input: 'Weather in Oslo as JSON',
      text: { format: { type: 'json_schema', name: 'weather', schema, strict: true } },
    });
    const parsed = JSON.parse(outputOf(res).text) as Record<string, unknown>;
    expect(Object.keys(parsed).sort()).toEqual(['city', 'temperature']);
    expect(typeof parsed.temperature).toBe('number');
    expect(res.text?.format).toMatchObject({ type: 'json_schema', name: 'weather', strict: true });
  });

  it('retrieve, input items (paginated), delete; another key gets 404, never 403', async () => {
    const created = await client.responses.create({
      model,
      instructions: 'Be brief.',
      input: [
        { role: 'user', content: 'one' },
        { role: 'assistant', content: 'two' },
        { role: 'user', content: [{ type: 'input_text', text: 'three' }] },
      ],
    });
    const got = await client.responses.retrieve(created.id);
    expect(got.id).toBe(created.id);
    expect(got.output).toEqual(created.output);
    expect(got.instructions).toBe('Be brief.');

    const page1 = await client.responses.inputItems.list(created.id, { limit: 2 });
    expect(page1.data).toHaveLength(2);
    expect(page1.has_more).toBe(true);
    const texts = (items: typeof page1.data) =>
      items.map((i) => (i.type === 'message' ? i.content.map((c) => ('text' in c ? c.text : '')).join('') : i.type));
    expect(texts(page1.data)).toEqual(['three', 'two']);
    const page2 = await page1.getNextPage();
    expect(texts(page2.data)).toEqual(['one']);
    expect(page2.has_more).toBe(false);

    expect(await errorOf(other.responses.retrieve(created.id))).toMatchObject({ status: 404, type: 'invalid_request_error' });
    expect(await errorOf(other.responses.inputItems.list(created.id))).toMatchObject({ status: 404 });
    expect(await errorOf(other.responses.delete(created.id))).toMatchObject({ status: 404 });
    expect(await errorOf(other.responses.create({ model, previous_response_id: created.id, input: 'continue' }))).toMatchObject({
      status: 400,
      param: 'previous_response_id',
    });

    await client.responses.delete(created.id);
    expect(await errorOf(client.responses.retrieve(created.id))).toMatchObject({ status: 404, code: 'response_not_found' });
  });

  it('counts input tokens as the chat pipeline does', async () => {
    const counted = await client.responses.inputTokens.count({ model, input: 'What is the weather in Paris?', tools: [weather] });
    expect(counted.object).toBe('response.input_tokens');
    const created = await client.responses.create({ model, input: 'What is the weather in Paris?', tools: [weather], store: false });
    expect(counted.input_tokens).toBe(created.usage!.input_tokens);
    expect(await errorOf(gw.client('sk-tera-other-model').responses.inputTokens.count({ model, input: 'hi' }))).toMatchObject({
      status: 403,
    });
  });

  it('seals reasoning for stateless clients: it opens for its key, is used upstream, and a tampered or foreign item is a 400', async () => {
    const first = await client.responses.create({
      model,
      input: 'What is the weather in Paris?',
      tools: [weather],
      store: false,
      include: ['reasoning.encrypted_content'],
    });
    const reasoningItem = outputOf(first).reasoningItem!;
    expect(reasoningItem.encrypted_content).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(reasoningItem.encrypted_content).not.toContain('user asks');
    const call = outputOf(first).calls[0]!;
    const sealedOnly = {
      type: 'reasoning' as const,
      id: reasoningItem.id,
      summary: [],
      encrypted_content: reasoningItem.encrypted_content,
    };
    const followUp = (reasoning: ResponseInputItem) => [
      { role: 'user' as const, content: 'What is the weather in Paris?' },
      reasoning,
      call as ResponseInputItem,
      { type: 'function_call_output' as const, call_id: call.call_id, output: '18 C' },
    ];
    const withoutReasoning = await client.responses.inputTokens.count({
      model,
      input: followUp({ type: 'reasoning', id: 'rs_x', summary: [] }),
      tools: [weather],
    });
    const withSealed = await client.responses.inputTokens.count({ model, input: followUp(sealedOnly), tools: [weather] });
    // The opened reasoning is part of the prompt the model sees.
    expect(withSealed.input_tokens).toBeGreaterThan(withoutReasoning.input_tokens + 10);
    const ok = await client.responses.create({ model, input: followUp(sealedOnly), tools: [weather], store: false });
    expect(ok.status).toBe('completed');

    const flipped = Buffer.from(reasoningItem.encrypted_content!, 'base64');
    flipped[flipped.length - 1]! ^= 1;
    const tampered = { ...sealedOnly, encrypted_content: flipped.toString('base64') };
    expect(await errorOf(client.responses.create({ model, input: followUp(tampered), tools: [weather] }))).toMatchObject({
      status: 400,
      type: 'invalid_request_error',
      param: 'input[1].encrypted_content',
      code: 'invalid_encrypted_content',
    });
    expect(await errorOf(other.responses.create({ model, input: followUp(sealedOnly), tools: [weather] }))).toMatchObject({
      status: 400,
      param: 'input[1].encrypted_content',
    });
  });

  it('Codex-shaped requests: namespace tools flattened and mapped back, web_search dropped, item ids kept', async () => {
    const res = await client.responses.create({
      model,
      input: [
        { type: 'message', id: 'msg_codex-1', role: 'developer', content: [{ type: 'input_text', text: 'You are a coding agent.' }] },
        { type: 'message', id: 'msg_codex-2', role: 'user', content: [{ type: 'input_text', text: 'Please spawn_agent for the job' }] },
      ] as unknown as ResponseInputItem[],
      tools: [
        {
          type: 'namespace',
          name: 'multi_agent_v1',
          description: 'Sub-agents',
          tools: [
            {
              type: 'function',
              name: 'spawn_agent',
              description: 'Spawn a sub agent',
              strict: false,
              parameters: { type: 'object', properties: {} },
            },
          ],
        },
        { type: 'web_search', external_web_access: false },
      ] as never,
      tool_choice: 'auto',
      parallel_tool_calls: true,
      reasoning: { summary: 'auto' },
      store: false,
      prompt_cache_key: 'session-1',
    });
    const call = outputOf(res).calls[0] as { name: string; namespace?: string } | undefined;
    expect(call).toMatchObject({ name: 'spawn_agent', namespace: 'multi_agent_v1' });
  });

  it('errors in the documented shape, with the Responses param', async () => {
    expect(
      await errorOf(
        client.responses.create({
          model,
          input: [
            {
              role: 'user',
              content: [
                { type: 'input_text', text: 'look' },
                { type: 'input_image', image_url: 'http://x/y.png', detail: 'auto' },
              ],
            },
          ],
        }),
      ),
    ).toMatchObject({ status: 400, param: 'input[0].content[1]', code: 'unsupported_content' });
    expect(await errorOf(client.responses.create({ model: 'gpt-9', input: 'hi' }))).toMatchObject({ status: 404, type: 'model_not_found' });
    expect(await errorOf(gw.client('sk-tera-nope-nope').responses.create({ model, input: 'hi' }))).toMatchObject({ status: 401 });
    expect(await errorOf(gw.client('sk-tera-other-model').responses.create({ model, input: 'hi' }))).toMatchObject({ status: 403 });
    expect(await errorOf(client.responses.create({ model, input: 'hi', background: true }))).toMatchObject({
      status: 400,
      param: 'background',
    });
    expect(await errorOf(client.responses.create({ model, input: 'hi', truncation: 'auto' }))).toMatchObject({
      status: 400,
      param: 'truncation',
    });
    expect(await errorOf(client.responses.create({ model, input: 'hi', max_output_tokens: 100_000 }))).toMatchObject({
      status: 400,
      param: 'max_output_tokens',
    });
    expect(await errorOf(client.responses.create({ model, input: [{ type: 'computer_call_output' } as never] }))).toMatchObject({
      status: 400,
      param: 'input[0].type',
    });
    expect(await errorOf(client.responses.create({ model, input: 'hi', bogus: 1 } as never))).toMatchObject({
      status: 400,
      param: 'bogus',
      code: 'unknown_parameter',
    });
  });

  it('max_output_tokens cut: status incomplete with the reason', async () => {
    const res = await client.responses.create({ model, input: 'Think hard', max_output_tokens: 5 });
    expect(res.status).toBe('incomplete');
    expect(res.incomplete_details).toEqual({ reason: 'max_output_tokens' });
  });
});

describe('Responses API options', () => {
  it('zero retention: nothing stored, previous_response_id refused with a reason; hosted tools rejected on request', async () => {
    const gw = await mountGateway('express', {
      replicas: [sims[0]!.url],
      auth: { keys },
      upstream: { health: { intervalMs: 200 } },
      responses: { store: false, hostedTools: 'reject' },
    });
    try {
      await gw.gateway.ready();
      const client = gw.client();
      const res = await client.responses.create({ model, input: 'hi', store: true });
      expect((res as unknown as { store: boolean }).store).toBe(false);
      expect(await errorOf(client.responses.retrieve(res.id))).toMatchObject({ status: 404 });
      const refused = await errorOf(client.responses.create({ model, input: 'more', previous_response_id: res.id }));
      expect(refused).toMatchObject({ status: 400, param: 'previous_response_id', code: 'stored_responses_disabled' });
      expect(refused.message).toMatch(/zero retention/);
      expect(await errorOf(client.responses.create({ model, input: 'hi', tools: [{ type: 'web_search' }] }))).toMatchObject({
        status: 400,
        param: 'tools[0].type',
        code: 'unsupported_tool',
      });
    } finally {
      await gw.close();
    }
  });

  it('an upstream that breaks off mid-stream: an error event, then response.failed; the SDK throws', async () => {
    const gw = await mountGateway('express', {
      replicas: [sims[0]!.url],
      auth: { keys },
      upstream: { health: false, forwardHeaders: ['x-sim-fault'] },
    });
    try {
      const res = await fetch(`${gw.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: 'Bearer sk-tera-test-key-1', 'content-type': 'application/json', 'x-sim-fault': 'drop-mid-stream' },
        body: JSON.stringify({ model, input: 'Tell me a long story', stream: true }),
      });
      expect(res.status).toBe(200);
      const events = (await res.text())
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => JSON.parse(l.slice(6)) as { type: string; sequence_number: number; code?: string; response?: { status: string } });
      expect(events[0]!.type).toBe('response.created');
      expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
      expect(events.at(-2)).toMatchObject({ type: 'error', code: 'upstream_stream_error' });
      expect(events.at(-1)).toMatchObject({ type: 'response.failed', response: { status: 'failed' } });

      const stream = gw
        .client()
        .responses.stream({ model, input: 'Tell me a long story' }, { headers: { 'x-sim-fault': 'drop-mid-stream' } });
      await expect(stream.finalResponse()).rejects.toThrow(/stream broke off/);
    } finally {
      await gw.close();
    }
  });

  it('responses: false leaves /responses unserved (404 in the error shape)', async () => {
    const gw = await mountGateway('express', { replicas: [sims[0]!.url], auth: { keys }, upstream: { health: false }, responses: false });
    try {
      const res = await fetch(`${gw.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: 'Bearer sk-tera-test-key-1', 'content-type': 'application/json' },
        body: JSON.stringify({ model, input: 'hi' }),
      });
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unknown_url');
    } finally {
      await gw.close();
    }
  });
});
