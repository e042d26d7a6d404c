import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeHarmony } from '../src/harmony.js';
import { startSimulator, type SimulatorHandle } from '../src/index.js';
import { sseData } from '../../../test/helpers/sse.js';

/**
 * What resuming a stream needs from vLLM, as the simulator serves it: a chat stream's token ids
 * (`return_token_ids`), and `/v1/completions` continuing the prompt's ids plus the ids generated
 * so far, on another replica, into exactly the tokens the first would have generated.
 */
const model = 'openai/gpt-oss-20b';
let first: SimulatorHandle;
let second: SimulatorHandle;
beforeAll(async () => {
  first = await startSimulator();
  second = await startSimulator();
});
afterAll(async () => {
  await first.close();
  await second.close();
});

interface Chunk {
  prompt_token_ids?: number[];
  choices: Array<{ token_ids?: number[]; text?: string; finish_reason?: string | null; delta?: Record<string, unknown> }>;
  usage?: { prompt_tokens: number; completion_tokens: number };
}

async function post(url: string, body: unknown): Promise<Chunk[]> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(200);
  return sseData(await res.text())
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d) as Chunk);
}

const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] }, days: { type: 'integer' } },
      required: ['city', 'unit', 'days'],
    },
  },
};

describe.each([
  ['an answer', { messages: [{ role: 'user', content: 'Tell me about the sea' }] }],
  ['a tool call', { messages: [{ role: 'user', content: 'What is the weather in Zürich?' }], tools: [weather] }],
])('%s, continued from any token on another replica', (_, request) => {
  it('the continuation is the rest of the same tokens, and its text shows the control tokens', async () => {
    const chunks = await post(`${first.url}/v1/chat/completions`, {
      model,
      ...request,
      seed: 7,
      stream: true,
      return_token_ids: true,
      stream_options: { include_usage: true },
    });
    const prompt = chunks[0]!.prompt_token_ids!;
    expect(prompt.length).toBeGreaterThan(20);
    // The system message carries VLLM_SYSTEM_START_DATE (set for the suite) as vLLM's render does, not today.
    expect(decodeHarmony(prompt)).toContain('Current date: 2026-01-15\n');
    const generated = chunks.flatMap((c) => c.choices[0]?.token_ids ?? []);
    expect(chunks.at(-1)!.usage).toMatchObject({ prompt_tokens: prompt.length, completion_tokens: generated.length });
    // Control tokens reach the stream as chunks with an empty delta and their id.
    expect(chunks.some((c) => c.choices[0]?.delta && Object.keys(c.choices[0].delta).length === 0 && c.choices[0].token_ids?.length)).toBe(
      true,
    );
    for (const at of [0, 1, 3, Math.floor(generated.length / 2), generated.length - 2]) {
      const rest = await post(`${second.url}/v1/completions`, {
        model,
        prompt: [...prompt, ...generated.slice(0, at)],
        seed: 7,
        max_tokens: 4096 - at,
        stream: true,
        skip_special_tokens: false,
        return_token_ids: true,
      });
      const ids = rest.flatMap((c) => c.choices[0]?.token_ids ?? []);
      expect(ids, `from token ${at}`).toEqual(generated.slice(at));
      const text = rest.map((c) => c.choices[0]?.text ?? '').join('');
      // The stop token ends the generation without text, as vLLM's EOS does.
      expect(text).toBe(decodeHarmony(generated.slice(at, -1)));
      expect(rest.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    }
  });
});

describe('/v1/completions otherwise', () => {
  it('an unseeded continuation is valid Harmony: reasoning ends, an answer follows and ends', async () => {
    const chunks = await post(`${first.url}/v1/chat/completions`, {
      model,
      messages: [{ role: 'user', content: 'hello' }],
      stream: true,
      return_token_ids: true,
    });
    const prompt = chunks[0]!.prompt_token_ids!;
    const generated = chunks.flatMap((c) => c.choices[0]?.token_ids ?? []);
    const rest = await post(`${second.url}/v1/completions`, {
      model,
      prompt: [...prompt, ...generated.slice(0, 6)],
      max_tokens: 500,
      stream: true,
      skip_special_tokens: false,
    });
    const text = rest.map((c) => c.choices[0]?.text ?? '').join('');
    expect(text).toMatch(/^[^<]+<\|end\|><\|start\|>assistant<\|channel\|>final<\|message\|>[^<]+$/);
    expect(rest.at(-1)!.choices[0]!.finish_reason).toBe('stop');
  });

  it('a text prompt, max_tokens 16 by default; special tokens hidden unless asked', async () => {
    const res = await fetch(`${first.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt: 'Once upon a time' }),
    });
    const body = (await res.json()) as { choices: Array<{ text: string; finish_reason: string }>; usage: { completion_tokens: number } };
    expect(body.choices[0]!.text.length).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeLessThanOrEqual(16);
  });
});
