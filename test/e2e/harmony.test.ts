import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';

const model = 'openai/gpt-oss-20b';
const tools = [
  {
    type: 'function' as const,
    function: {
      name: 'get_weather',
      description: 'Get the weather for a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  },
];
type Msg = OpenAI.ChatCompletionMessage & { reasoning?: string };

let leaky: SimProcess;
let reference: SimProcess;
let gw: Mounted;
let direct: OpenAI;
beforeAll(async () => {
  [leaky, reference] = await Promise.all([spawnSim(['--itl-ms', '1']), spawnSim([])]);
  gw = await mountGateway('express', {
    replicas: [leaky.url],
    auth: { keys: [{ key: 'sk-tera-test-key-1' }] },
    upstream: { health: { intervalMs: 200 }, forwardHeaders: ['x-sim-quirk'] },
  });
  await gw.gateway.ready();
  direct = new OpenAI({ baseURL: `${reference.url}/v1`, apiKey: 'x' });
});
afterAll(async () => {
  await gw.close();
  await Promise.all([leaky.kill(), reference.kill()]);
});

/** Reads a stream the way PROTOCOL.md says tests must: summing reasoning and content deltas. */
async function summed(client: OpenAI, body: OpenAI.ChatCompletionCreateParamsStreaming, headers: Record<string, string>) {
  const stream = await client.chat.completions.create(body, { headers });
  let reasoning = '';
  let content = '';
  for await (const chunk of stream) {
    const d = chunk.choices[0]?.delta as { reasoning?: string; content?: string } | undefined;
    reasoning += d?.reasoning ?? '';
    content += d?.content ?? '';
  }
  return { reasoning, content };
}

describe.each([
  'harmony-tool-name',
  'harmony-constrain-name',
  'harmony-recipient',
  'harmony-tool-in-content',
  'harmony-tool-in-content-plain',
])('%s through the gateway', (quirk) => {
  const body = { model, seed: 5, messages: [{ role: 'user' as const, content: 'What is the weather in Oslo?' }], tools };
  it('non-streaming and streaming give the real tool call, finish_reason tool_calls, no leak in content', async () => {
    const expected = await direct.chat.completions.create(body);
    const want = expected.choices[0]!.message.tool_calls!.map((c) => (c as OpenAI.ChatCompletionMessageFunctionToolCall).function);
    const headers = { 'x-sim-quirk': quirk };
    const once = await gw.client().chat.completions.create(body, { headers });
    expect(once.choices[0]!.finish_reason).toBe('tool_calls');
    expect(once.choices[0]!.message.tool_calls!.map((c) => (c as OpenAI.ChatCompletionMessageFunctionToolCall).function)).toEqual(want);
    expect(once.choices[0]!.message.content ?? '').not.toContain('<|');
    expect(once.choices[0]!.message.content ?? '').not.toContain('to=functions');
    const streamed = await gw.client().chat.completions.stream(body, { headers }).finalChatCompletion();
    expect(streamed.choices[0]!.finish_reason).toBe('tool_calls');
    expect(streamed.choices[0]!.message.tool_calls!.map((c) => (c as OpenAI.ChatCompletionMessageFunctionToolCall).function)).toEqual(want);
    for (const c of streamed.choices[0]!.message.tool_calls!) expect(c.id).toMatch(/^chatcmpl-tool-[0-9a-f]{32}$/);
    expect(streamed.choices[0]!.message.content ?? '').toBe('');
  });
});

describe.each(['harmony-analysis-in-content', 'harmony-analysis-in-content-plain'])('%s through the gateway', (quirk) => {
  const body = { model, seed: 8, messages: [{ role: 'user' as const, content: 'What is 2+2?' }] };
  it('the analysis goes to reasoning, the final text stays content, streaming and not', async () => {
    const expected = (await direct.chat.completions.create(body)).choices[0]!.message as Msg;
    const headers = { 'x-sim-quirk': quirk };
    const once = (await gw.client().chat.completions.create(body, { headers })).choices[0]!.message as Msg;
    expect(once.content).toBe(expected.content);
    expect(once.reasoning).toBe(expected.reasoning);
    const streamed = await summed(gw.client(), { ...body, stream: true }, headers);
    expect(streamed.content).toBe(expected.content);
    expect(streamed.reasoning).toBe(expected.reasoning);
  });
});
