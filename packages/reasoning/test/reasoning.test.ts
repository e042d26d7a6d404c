import { describe, expect, it } from 'vitest';
import { createContext, transformSSE, type ChatCompletion, type ChatCompletionChunk, type ChatCompletionRequest } from '@tera-gw/core';
import { reasoningTransform } from '../src/index.js';

const ctx = createContext();
const completion = (message: Record<string, unknown>): ChatCompletion => ({
  id: 'c',
  object: 'chat.completion',
  created: 1,
  model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: 'four', ...message }, logprobs: null, finish_reason: 'stop' }],
});
const chunk = (delta: Record<string, unknown>): ChatCompletionChunk => ({
  id: 'c',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'm',
  choices: [{ index: 0, delta, logprobs: null, finish_reason: null }],
});

describe('response side', () => {
  it.each([
    [{ reasoning: 'two plus two' }],
    [{ reasoning_content: 'two plus two' }],
    [{ reasoning: 'two plus two', reasoning_content: 'two plus two' }],
  ])('upstream %j -> the caller gets `reasoning` only', (fields) => {
    const out = reasoningTransform().completion!(completion(fields), ctx);
    expect(out.choices[0]!.message).toEqual({ role: 'assistant', content: 'four', reasoning: 'two plus two' });
    const c = reasoningTransform().chunk!(chunk(fields), ctx);
    expect(c[0]!.choices[0]!.delta).toEqual({ reasoning: 'two plus two' });
  });

  it('output reasoning_content, both, none', () => {
    expect(
      reasoningTransform({ output: 'reasoning_content' }).completion!(completion({ reasoning: 'r' }), ctx).choices[0]!.message,
    ).toEqual({ role: 'assistant', content: 'four', reasoning_content: 'r' });
    expect(reasoningTransform({ output: 'both' }).chunk!(chunk({ reasoning_content: 'r' }), ctx)[0]!.choices[0]!.delta).toEqual({
      reasoning: 'r',
      reasoning_content: 'r',
    });
    const hidden = reasoningTransform({ output: 'none' });
    expect(hidden.completion!(completion({ reasoning: 'secret' }), ctx).choices[0]!.message).toEqual({
      role: 'assistant',
      content: 'four',
    });
    expect(hidden.chunk!(chunk({ reasoning: 'secret' }), ctx)).toEqual([]);
    expect(hidden.chunk!(chunk({ role: 'assistant', content: '' }), ctx)).toHaveLength(1);
    expect(hidden.chunk!(chunk({ content: 'x' }), ctx)[0]!.choices[0]!.delta).toEqual({ content: 'x' });
  });

  it('content is never touched', () => {
    const out = reasoningTransform().chunk!(chunk({ content: 'answer', reasoning_content: 'why' }), ctx);
    expect(out[0]!.choices[0]!.delta).toEqual({ content: 'answer', reasoning: 'why' });
  });
});

describe('request side', () => {
  const body = (): ChatCompletionRequest => ({
    model: 'openai/gpt-oss-20b',
    messages: [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: 'a', reasoning_content: 'thought' },
      { role: 'assistant', content: 'b', reasoning: 'thought 2' },
      { role: 'user', content: 'q2' },
    ],
  });

  it('assistant reasoning sent back in either field becomes the upstream field', () => {
    const out = reasoningTransform().request!(body(), ctx);
    expect(out.messages[1]).toEqual({ role: 'assistant', content: 'a', reasoning: 'thought' });
    expect(out.messages[2]).toEqual({ role: 'assistant', content: 'b', reasoning: 'thought 2' });
    const old = reasoningTransform({ upstreamField: 'reasoning_content' }).request!(body(), ctx);
    expect(old.messages[2]).toEqual({ role: 'assistant', content: 'b', reasoning_content: 'thought 2' });
    const dropped = reasoningTransform({ upstreamField: 'drop' }).request!(body(), ctx);
    expect(dropped.messages[1]).toEqual({ role: 'assistant', content: 'a' });
  });
});

describe('through transformSSE', () => {
  const run = async (data: string[]) => {
    const text = data.map((d) => `data: ${d}\n\n`).join('') + 'data: [DONE]\n\n';
    const source = new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(new TextEncoder().encode(text)), c.close()) });
    const out = await new Response(transformSSE(source, [reasoningTransform()], createContext())).text();
    return out
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => e.slice(6));
  };
  it('a delta already in `reasoning` leaves as the upstream wrote it; `reasoning_content` is moved', async () => {
    // \u00e9 and the spacing are the upstream's: serializing again would change them.
    const kept =
      '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"reasoning":"caf\\u00e9"},"logprobs":null,"finish_reason":null}]}';
    const legacy =
      '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"reasoning_content":"caf\\u00e9"},"logprobs":null,"finish_reason":null}]}';
    const [first, second] = await run([kept, legacy]);
    expect(first).toBe(kept);
    expect(JSON.parse(second!).choices[0].delta).toEqual({ reasoning: 'café' });
  });
});
