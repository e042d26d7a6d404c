import { describe, expect, it } from 'vitest';
import { createContext, transformSSE, type ChatCompletionChunk } from '@tera-gw/core';
import { MemoryResponseStore, responses, type ResponseObject, type StoredInputItem } from '../src/index.js';
import {
  ResponsesStreamEncoder,
  createSealer,
  itemsToMessages,
  normalizeItem,
  parseResponsesRequest,
  translateTools,
  type ResponseSettings,
} from '../src/internal.js';

describe('sealed reasoning', () => {
  const sealer = createSealer(['secret-number-one-0123456789']);
  it('opens for the key it was sealed for, and for no other', () => {
    const sealed = sealer.seal('the chain of thought', 'team-a');
    expect(sealed).not.toContain('chain');
    expect(sealer.open(sealed, 'team-a')).toBe('the chain of thought');
    expect(sealer.open(sealed, 'team-b')).toBeUndefined();
  });
  it('any changed byte, a truncation or garbage is refused', () => {
    const sealed = Buffer.from(sealer.seal('text', 'k'), 'base64');
    for (let i = 0; i < sealed.length; i++) {
      const copy = Buffer.from(sealed);
      copy[i]! ^= 0x01;
      expect(sealer.open(copy.toString('base64'), 'k')).toBeUndefined();
    }
    expect(sealer.open(sealed.subarray(0, 20).toString('base64'), 'k')).toBeUndefined();
    expect(sealer.open('not base64 at all!', 'k')).toBeUndefined();
  });
  it('rotation: the first secret seals, every secret opens', () => {
    const old = createSealer(['secret-number-one-0123456789']);
    const rotated = createSealer(['secret-number-two-0123456789', 'secret-number-one-0123456789']);
    expect(rotated.open(old.seal('x', 'k'), 'k')).toBe('x');
    expect(old.open(rotated.seal('y', 'k'), 'k')).toBeUndefined();
  });
  it('refuses short secrets', () => {
    expect(() => createSealer(['short'])).toThrow(/16 characters/);
  });
});

describe('request errors', () => {
  it.each([
    [{ input: 'hi', temperature: 'hot' }, "Invalid type for 'temperature': expected number, but got string."],
    [{ input: 'hi', stream: 'yes' }, "Invalid type for 'stream': expected boolean, but got string."],
    [{ input: 'hi', model: undefined }, "Missing required parameter: 'model'."],
  ])('a wrong type is named as one, a missing field as missing: %j', (patch, message) => {
    expect(() => parseResponsesRequest({ model: 'openai/gpt-oss-20b', ...patch })).toThrow(message);
  });
});

describe('translation onto chat', () => {
  const open = () => undefined;
  it('consecutive function calls become one assistant message; reasoning rides on the message that follows it', () => {
    const items = [
      normalizeItem({ role: 'user', content: 'hi' }, 'input[0]', open),
      normalizeItem({ type: 'reasoning', summary: [], content: [{ type: 'reasoning_text', text: 'think' }] }, 'input[1]', open),
      normalizeItem({ type: 'function_call', call_id: 'c1', name: 'a', arguments: '{}' }, 'input[2]', open),
      normalizeItem({ type: 'function_call', call_id: 'c2', name: 'b', arguments: '{}', namespace: 'ns' }, 'input[3]', open),
      normalizeItem({ type: 'function_call_output', call_id: 'c1', output: 'one' }, 'input[4]', open),
      normalizeItem({ type: 'function_call_output', call_id: 'c2', output: [{ type: 'input_text', text: 'two' }] }, 'input[5]', open),
      normalizeItem({ type: 'reasoning', summary: [], content: [{ type: 'reasoning_text', text: 'more' }] }, 'input[6]', open),
      normalizeItem({ role: 'assistant', content: [{ type: 'output_text', text: 'done' }] }, 'input[7]', open),
    ];
    expect(itemsToMessages(items, new Map())).toEqual([
      { role: 'user', content: 'hi' },
      {
        role: 'assistant',
        content: null,
        reasoning: 'think',
        tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'a', arguments: '{}' } },
          { id: 'c2', type: 'function', function: { name: 'ns__b', arguments: '{}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'one' },
      { role: 'tool', tool_call_id: 'c2', content: 'two' },
      { role: 'assistant', content: 'done', reasoning: 'more' },
    ]);
  });
  it('names what is wrong with an item', () => {
    expect(() => normalizeItem({ type: 'function_call', name: 'a', arguments: '{}' }, 'input[2]', open)).toThrow(
      expect.objectContaining({ param: 'input[2].call_id' }),
    );
    expect(() => normalizeItem({ role: 'tool', content: 'x' }, 'input[0]', open)).toThrow(
      expect.objectContaining({ param: 'input[0].role' }),
    );
    expect(() => normalizeItem({ type: 'reasoning', summary: [], encrypted_content: 'AAAA' }, 'input[1]', () => undefined)).toThrow(
      expect.objectContaining({ param: 'input[1].encrypted_content', code: 'invalid_encrypted_content' }),
    );
  });
  it('namespaces flatten to unique function names; hosted tools are dropped or refused', () => {
    const raw = [
      { type: 'function', name: 'get_weather', parameters: { type: 'object' } },
      { type: 'namespace', name: 'multi_agent_v1', description: 'x', tools: [{ type: 'function', name: 'spawn_agent' }] },
      { type: 'web_search', external_web_access: false },
    ];
    const t = translateTools(raw, 'drop');
    expect(t.tools.map((x) => x.function.name)).toEqual(['get_weather', 'multi_agent_v1__spawn_agent']);
    expect(t.names.get('multi_agent_v1__spawn_agent')).toEqual({ name: 'spawn_agent', namespace: 'multi_agent_v1' });
    expect(t.dropped).toEqual(['web_search']);
    expect(() => translateTools(raw, 'reject')).toThrow(expect.objectContaining({ param: 'tools[2].type', code: 'unsupported_tool' }));
    expect(() => translateTools([raw[0], raw[0]], 'drop')).toThrow(expect.objectContaining({ param: 'tools[1].name' }));
  });
});

const base = (): ResponseObject =>
  ({
    id: 'resp_1',
    object: 'response',
    status: 'in_progress',
    output: [],
    usage: null,
    error: null,
    incomplete_details: null,
  }) as unknown as ResponseObject;
const chunk = (delta: Record<string, unknown>, finish: string | null = null): ChatCompletionChunk => ({
  id: 'c',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'm',
  choices: [{ index: 0, delta, finish_reason: finish }],
});
function events(text: string): Array<Record<string, unknown> & { type: string; sequence_number: number }> {
  return text
    .split('\n\n')
    .filter(Boolean)
    .map((block) => {
      const [eventLine, dataLine] = block.split('\n');
      const event = JSON.parse(dataLine!.slice('data: '.length)) as Record<string, unknown> & { type: string; sequence_number: number };
      expect(eventLine).toBe(`event: ${event.type}`);
      return event;
    });
}

describe('the stream encoder', () => {
  const settings = (extra: Partial<ResponseSettings> = {}): ResponseSettings => ({
    base: base(),
    names: new Map([['ns__b', { name: 'b', namespace: 'ns' }]]),
    logprobs: false,
    ...extra,
  });
  const usage = { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, completion_tokens_details: { reasoning_tokens: 2 } };

  it('reasoning, text, then two tool calls: every item opens, streams and closes in order', async () => {
    const encoder = new ResponsesStreamEncoder(settings({ seal: (t) => `sealed(${t})` }));
    let text = encoder.chunk(chunk({ role: 'assistant' }));
    text += encoder.chunk(chunk({ reasoning: 'a' }));
    text += encoder.chunk(chunk({ reasoning_content: 'b' }));
    text += encoder.chunk(chunk({ content: 'Hi' }));
    text += encoder.chunk(chunk({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'a', arguments: '' } }] }));
    text += encoder.chunk(chunk({ tool_calls: [{ index: 0, function: { arguments: '{"x":' } }] }));
    text += encoder.chunk(chunk({ tool_calls: [{ index: 0, function: { arguments: '1}' } }] }));
    text += encoder.chunk(
      chunk({ tool_calls: [{ index: 1, id: 'call_2', type: 'function', function: { name: 'ns__b', arguments: '{}' } }] }),
    );
    text += encoder.chunk(chunk({}, 'tool_calls'));
    const end = await encoder.end(createContext().usage ?? usage);
    const all = events(text + end.text);
    expect(all.map((e) => e.sequence_number)).toEqual(all.map((_, i) => i));
    expect(all.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.reasoning_text.delta',
      'response.reasoning_text.delta',
      'response.reasoning_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    const output = end.response.output;
    expect(output.map((i) => i.type)).toEqual(['reasoning', 'message', 'function_call', 'function_call']);
    expect(output[0]).toMatchObject({
      content: [{ type: 'reasoning_text', text: 'ab' }],
      encrypted_content: 'sealed(ab)',
      status: 'completed',
    });
    expect(output[1]).toMatchObject({ content: [{ type: 'output_text', text: 'Hi' }] });
    expect(output[2]).toMatchObject({ call_id: 'call_1', name: 'a', arguments: '{"x":1}' });
    expect(output[3]).toMatchObject({ call_id: 'call_2', name: 'b', namespace: 'ns', arguments: '{}' });
    expect(end.response.usage).toEqual({
      input_tokens: 10,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 5,
      output_tokens_details: { reasoning_tokens: 2 },
      total_tokens: 15,
    });
    // Items announced when added carry no content yet (the SDK's accumulator appends parts by index).
    const added = all.filter((e) => e.type === 'response.output_item.added').map((e) => e.item as { content?: unknown[] });
    expect(added[0]!.content).toEqual([]);
  });

  it('a length stop ends with response.incomplete and the reason', async () => {
    const encoder = new ResponsesStreamEncoder(settings());
    const text = encoder.chunk(chunk({ content: 'cut' })) + encoder.chunk(chunk({}, 'length'));
    const end = await encoder.end(usage);
    const last = events(text + end.text).at(-1)!;
    expect(last.type).toBe('response.incomplete');
    expect(last.response).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
  });

  it('a failure after the first byte: an error event, then response.failed', () => {
    const encoder = new ResponsesStreamEncoder(settings());
    const text =
      encoder.chunk(chunk({ content: 'part' })) +
      encoder.error({
        error: { message: 'The model server stream failed.', type: 'server_error', code: 'upstream_stream_error', param: null },
      });
    const all = events(text);
    expect(all.at(-2)).toMatchObject({ type: 'error', code: 'upstream_stream_error', message: 'The model server stream failed.' });
    expect(all.at(-1)).toMatchObject({ type: 'response.failed', response: { status: 'failed', error: { code: 'upstream_stream_error' } } });
  });
});

describe('the memory store', () => {
  const record = (id: string, size: number) => ({
    response: {
      ...base(),
      id,
      output: [{ type: 'message', id: `msg_${id}`, role: 'assistant', status: 'completed', content: [] }],
    } as ResponseObject,
    input: [
      { id: `in_${id}`, type: 'message', role: 'user', content: [{ type: 'input_text', text: 'x'.repeat(size) }] } as StoredInputItem,
    ],
  });
  const stored = async (store: MemoryResponseStore, key: string, id: string) => {
    const text = await store.responseText(key, id);
    return text === undefined ? undefined : (JSON.parse(text) as ResponseObject);
  };
  it('keeps at most maxBytes, dropping the oldest first, items with their response', async () => {
    const store = new MemoryResponseStore({ maxBytes: 3000 });
    await store.put('k', record('a', 1000));
    await store.put('k', record('b', 1000));
    expect((await store.item('k', 'in_a'))?.items[0]?.id).toBe('in_a');
    await store.put('k', record('c', 1000));
    expect(await stored(store, 'k', 'a')).toBeUndefined();
    expect(await store.item('k', 'in_a')).toBeUndefined();
    expect(await store.item('k', 'msg_a')).toBeUndefined();
    expect((await stored(store, 'k', 'b'))?.id).toBe('b');
    expect((await stored(store, 'k', 'c'))?.id).toBe('c');
  });
  it('forgets responses after the TTL; a record over the size bound is not kept', async () => {
    const store = new MemoryResponseStore({ ttlMs: 20, maxRecordBytes: 500 });
    await store.put('k', record('a', 10));
    await store.put('k', record('big', 1000));
    expect(await stored(store, 'k', 'a')).toBeDefined();
    expect(await stored(store, 'k', 'big')).toBeUndefined();
    await new Promise((r) => setTimeout(r, 40));
    expect(await stored(store, 'k', 'a')).toBeUndefined();
  });
  it('hands out copies: changing what conversation() returned changes nothing stored', async () => {
    const store = new MemoryResponseStore();
    await store.put('k', record('a', 1));
    const got = (await store.conversation('k', 'a'))!;
    got.items.length = 0;
    expect((await store.conversation('k', 'a'))!.items).toHaveLength(2);
  });
  it("a key's quota evicts its own oldest responses, never another key's; ids are per key", async () => {
    const store = new MemoryResponseStore({ maxBytes: 20_000, perKey: { maxBytes: 6000, maxResponses: 3 } });
    await store.put('quiet', record('q1', 1000));
    for (let i = 0; i < 10; i++) await store.put('flood', record(`f${i}`, 1500));
    expect(await stored(store, 'quiet', 'q1')).toBeDefined();
    // The flood kept at most its quota: its newest three.
    const kept: string[] = [];
    for (let i = 0; i < 10; i++) if (await stored(store, 'flood', `f${i}`)) kept.push(`f${i}`);
    expect(kept).toEqual(['f7', 'f8', 'f9']);
    // The same client-chosen item id under two keys: each key resolves its own.
    const mine = record('m', 5);
    const theirs = record('t', 7);
    mine.input[0]!.id = 'msg_shared_1';
    theirs.input[0]!.id = 'msg_shared_1';
    await store.put('quiet', mine);
    await store.put('flood', theirs);
    const resolved = (await store.item('quiet', 'msg_shared_1'))!.items[0] as unknown as { content: Array<{ text: string }> };
    expect(resolved.content[0]!.text).toBe('x'.repeat(5));
    expect(await store.item('nobody', 'msg_shared_1')).toBeUndefined();
    // Over the store's own bound, the key holding the most gives up its oldest.
    for (let i = 0; i < 6; i++) await store.put(`key${i}`, record(`r${i}`, 4000));
    expect(await stored(store, 'quiet', 'q1')).toBeDefined();
  });
});

describe('in-house use: translate() then core transformSSE', () => {
  it('turns a chat SSE stream into Responses events and stores the result for the key', async () => {
    const stage = responses();
    const ctx = createContext();
    ctx.key = { id: 'in-house', models: '*' };
    const chat = await stage.translate({ model: 'openai/gpt-oss-20b', input: 'hi', stream: true, instructions: 'Be brief.' }, ctx);
    expect(chat.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'hi' },
    ]);
    const upstream = [
      chunk({ role: 'assistant', reasoning: 'Think.' }),
      chunk({ content: 'Hello' }),
      chunk({}, 'stop'),
      { ...chunk({}), choices: [], usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 } },
    ]
      .map((c) => `data: ${JSON.stringify(c)}\n\n`)
      .join('');
    const source = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(`${upstream}data: [DONE]\n\n`));
        c.close();
      },
    });
    let text = '';
    const reader = transformSSE(source, [], ctx).getReader();
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      text += new TextDecoder().decode(r.value);
    }
    const all = events(text);
    const completed = all.at(-1)!;
    expect(completed.type).toBe('response.completed');
    const response = completed.response as ResponseObject;
    expect(response.output.map((i) => i.type)).toEqual(['reasoning', 'message']);
    expect(response.usage).toMatchObject({ input_tokens: 9, output_tokens: 3, output_tokens_details: { reasoning_tokens: 2 } });
    const stored = await stage.store!.responseText('in-house', response.id);
    expect((JSON.parse(stored!) as ResponseObject).output).toEqual(response.output);
    expect(await stage.store!.responseText('someone-else', response.id)).toBeUndefined();
  });
});
