import { describe, expect, it } from 'vitest';
import { createContext, transformSSE, type ChatCompletionChunk, type ChatTransform } from '../src/index.js';
import { withoutUsageMember } from '../src/internal.js';

const chunk = (delta: Record<string, unknown>, finish: string | null = null): ChatCompletionChunk => ({
  id: 'chatcmpl-1',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'openai/gpt-oss-20b',
  choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
});

const upstream = [
  chunk({ role: 'assistant', content: '', reasoning: 'L’utilisateur demande 🤔 ' }),
  chunk({ reasoning: 'deux plus deux.' }),
  chunk({ content: 'Quatre — 4 ✓' }),
  chunk({}, 'stop'),
];
const upstreamText = upstream.map((c) => `data: ${JSON.stringify(c)}\n\n`).join('') + 'data: [DONE]\n\n';
const bytes = new TextEncoder().encode(upstreamText);

async function collect(stream: ReadableStream<Uint8Array>): Promise<string> {
  let out = '';
  const decoder = new TextDecoder();
  for await (const b of stream as unknown as AsyncIterable<Uint8Array>) out += decoder.decode(b, { stream: true });
  return out + decoder.decode();
}

function pieces(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const p of parts) controller.enqueue(p);
      controller.close();
    },
  });
}

const upper: ChatTransform = {
  name: 'upper',
  chunk(c) {
    const d = c.choices[0]?.delta;
    if (d?.content) d.content = d.content.toUpperCase();
    return [c];
  },
  end: () => [chunk({ content: '!' })],
};

describe('transformSSE', () => {
  it('passes a stream through unchanged with no transforms', async () => {
    expect(await collect(transformSSE(pieces([bytes]), []))).toBe(upstreamText);
  });

  it('gives the same output for the stream split at every byte boundary (multibyte included)', async () => {
    const whole = await collect(transformSSE(pieces([bytes]), [upper]));
    expect(whole).toContain('QUATRE — 4 ✓');
    expect(whole).toContain('"content":"!"');
    expect(whole.endsWith('data: [DONE]\n\n')).toBe(true);
    for (let cut = 1; cut < bytes.length; cut++) {
      const out = await collect(transformSSE(pieces([bytes.subarray(0, cut), bytes.subarray(cut)]), [upper]));
      expect(out).toBe(whole);
    }
  });

  it('one byte at a time', async () => {
    const parts = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
    expect(await collect(transformSSE(pieces(parts), [upper]))).toBe(await collect(transformSSE(pieces([bytes]), [upper])));
  });

  it('CRLF line endings and comments are accepted', async () => {
    const crlf = `: keep-alive\r\n\r\n${upstreamText.replaceAll('\n', '\r\n')}`;
    expect(await collect(transformSSE(pieces([new TextEncoder().encode(crlf)]), []))).toBe(upstreamText);
  });

  it('records usage on the context', async () => {
    const ctx = createContext();
    const usage = { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 };
    const text = upstreamText.replace('data: [DONE]', `data: ${JSON.stringify({ ...chunk({}), choices: [], usage })}\n\ndata: [DONE]`);
    await collect(transformSSE(pieces([new TextEncoder().encode(text)]), [], ctx));
    expect(ctx.usage).toEqual(usage);
  });

  it.each([
    ['a stream that ends without [DONE]', upstreamText.replace('data: [DONE]\n\n', ''), 'upstream_stream_error'],
    ['malformed JSON', upstreamText.replace('data: [DONE]', 'data: {"choices": [tru'), 'upstream_stream_error'],
    [
      'an upstream error event',
      upstreamText.replace('data: [DONE]', 'data: {"error":{"message":"engine died","type":"InternalServerError","code":500}}'),
      'upstream_stream_error',
    ],
  ])('%s ends with exactly one error event in the public shape', async (_name, text, code) => {
    const out = await collect(transformSSE(pieces([new TextEncoder().encode(text)]), []));
    const events = out.split('\n\n').filter(Boolean);
    const last = JSON.parse(events.at(-1)!.slice('data: '.length));
    expect(last.error.type).toBe('server_error');
    expect(last.error.code).toBe(code);
    expect(out).not.toContain('[DONE]');
    expect(events.filter((e) => e.includes('"error"'))).toHaveLength(1);
  });
});

describe('withoutUsageMember', () => {
  const head =
    '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"logprobs":null,"finish_reason":null}]';
  it.each([
    ['flat usage', `${head},"usage":{"prompt_tokens":5,"total_tokens":6,"completion_tokens":1}}`],
    [
      'usage with details',
      `${head},"usage":{"prompt_tokens":5,"total_tokens":6,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":0}}}`,
    ],
    ['null usage', `${head},"usage":null}`],
  ])('cuts %s to the chunk without it', (_name, data) => {
    const cut = withoutUsageMember(data)!;
    expect(cut).toBe(`${head}}`);
    const { usage: _usage, ...rest } = JSON.parse(data) as Record<string, unknown>;
    expect(JSON.parse(cut)).toEqual(rest);
  });
  it.each([
    ['no usage', `${head}}`],
    ['a member after usage', `${head},"usage":{"prompt_tokens":5},"extra":{"a":1}}`],
    ['a string member after usage', `${head},"usage":{"prompt_tokens":5},"note":"x"}`],
    ['usage nested in another member', `${head},"kv":{"x":1,"usage":{"a":1}}}`],
    ['the text ,"usage": inside content', '{"choices":[{"delta":{"content":"a,\\"usage\\":{}"}}]}'],
  ])('leaves %s to serialization (undefined)', (_name, data) => {
    expect(withoutUsageMember(data)).toBeUndefined();
  });
});
