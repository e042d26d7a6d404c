import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createContext, transformSSE, type ChatCompletion, type ChatCompletionChunk, type ChatTool } from '@tera-gw/core';
import { reasoningTransform } from '@tera-gw/reasoning';
import { accumulateChunks, toolCallsTransform } from '@tera-gw/tool-calls';
import { sseData } from '../../../test/helpers/sse.js';
import { harmonyTransform } from '../src/index.js';

const tools: ChatTool[] = [
  { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
  { type: 'function', function: { name: 'query_dataset', parameters: { type: 'object' } } },
];
const request = { tools };
const base = { id: 'chatcmpl-1', object: 'chat.completion.chunk' as const, created: 1, model: 'openai/gpt-oss-20b' };
const chunk = (delta: Record<string, unknown>, finish: string | null = null): ChatCompletionChunk => ({
  ...base,
  choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
});

/** An upstream stream: the content in small pieces (control tokens split across deltas), then a finish. */
function upstreamStream(content: string, opts: { reasoning?: string; toolName?: string; piece?: number } = {}): ChatCompletionChunk[] {
  const out = [chunk({ role: 'assistant', content: '' })];
  if (opts.reasoning) out.push(chunk({ reasoning: opts.reasoning }));
  const size = opts.piece ?? 3;
  for (let i = 0; i < content.length; i += size) out.push(chunk({ content: content.slice(i, i + size) }));
  if (opts.toolName) {
    out.push(
      chunk({ tool_calls: [{ index: 0, id: 'chatcmpl-tool-x', type: 'function', function: { name: opts.toolName, arguments: '' } }] }),
    );
    out.push(chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":"Oslo"}' } }] }));
  }
  out.push(chunk({}, opts.toolName ? 'tool_calls' : 'stop'));
  return out;
}

const sse = (chunks: ChatCompletionChunk[]) =>
  new TextEncoder().encode(chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join('') + 'data: [DONE]\n\n');

async function throughGateway(parts: Uint8Array[]): Promise<ChatCompletionChunk[]> {
  const source = new ReadableStream<Uint8Array>({ start: (c) => (parts.forEach((p) => c.enqueue(p)), c.close()) });
  const ctx = createContext();
  const text = await new Response(
    transformSSE(source, [harmonyTransform(request), reasoningTransform(), toolCallsTransform(request)], ctx),
  ).text();
  expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
  return sseData(text)
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d) as ChatCompletionChunk);
}

function nonStreaming(content: string, opts: { reasoning?: string; toolName?: string } = {}): ChatCompletion {
  const message: Record<string, unknown> = { role: 'assistant', content: content === '' && opts.toolName ? null : content };
  if (opts.reasoning) message.reasoning = opts.reasoning;
  if (opts.toolName)
    message.tool_calls = [{ id: 'chatcmpl-tool-x', type: 'function', function: { name: opts.toolName, arguments: '{"city":"Oslo"}' } }];
  const body = {
    id: 'c',
    object: 'chat.completion',
    created: 1,
    model: 'm',
    choices: [{ index: 0, message, logprobs: null, finish_reason: opts.toolName ? 'tool_calls' : 'stop' }],
  } as ChatCompletion;
  const ctx = createContext();
  return toolCallsTransform(request).completion!(
    reasoningTransform().completion!(harmonyTransform(request).completion!(body, ctx), ctx),
    ctx,
  );
}

interface Expected {
  content: string | null;
  reasoning?: string;
  calls?: Array<[string, string]>;
  finish: string;
}

const cases: Array<[string, string, { reasoning?: string; toolName?: string }, Expected]> = [
  [
    'control tokens in a tool name',
    '',
    { toolName: 'query_dataset<|channel|>commentary' },
    { content: null, calls: [['query_dataset', '{"city":"Oslo"}']], finish: 'tool_calls' },
  ],
  [
    '<|constrain|> in a tool name',
    '',
    { toolName: 'get_weather<|constrain|>json' },
    { content: null, calls: [['get_weather', '{"city":"Oslo"}']], finish: 'tool_calls' },
  ],
  [
    'the functions. recipient prefix',
    '',
    { toolName: 'functions.get_weather' },
    { content: null, calls: [['get_weather', '{"city":"Oslo"}']], finish: 'tool_calls' },
  ],
  [
    'a tool call left in content, token form',
    '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>',
    {},
    { content: null, calls: [['get_weather', '{"city":"Paris"}']], finish: 'tool_calls' },
  ],
  [
    'a tool call left in content, plain form',
    'commentary to=functions.get_weather json{"city":"Paris"}',
    {},
    { content: null, calls: [['get_weather', '{"city":"Paris"}']], finish: 'tool_calls' },
  ],
  [
    'the analysis channel left in content, token form',
    '<|channel|>analysis<|message|>User asks 2+2. Simple.<|end|><|start|>assistant<|channel|>final<|message|>four',
    {},
    { content: 'four', reasoning: 'User asks 2+2. Simple.', finish: 'stop' },
  ],
  [
    'the analysis channel left in content, plain form',
    'analysisUser asks 2+2. Simple.assistantfinalfour',
    {},
    { content: 'four', reasoning: 'User asks 2+2. Simple.', finish: 'stop' },
  ],
  [
    'a leaked call to an undeclared tool is never made',
    '<|channel|>commentary to=functions.delete_everything <|constrain|>json<|message|>{"path":"/"}<|call|>',
    {},
    { content: '', finish: 'stop' },
  ],
  [
    'stray control tokens in content and reasoning',
    'The answer<|end|> is 4.<|return|>',
    { reasoning: 'Think<|end|> hard' },
    { content: 'The answer is 4.', reasoning: 'Think hard', finish: 'stop' },
  ],
];

function check(message: ChatCompletion['choices'][number]['message'], finish: string | null, expected: Expected) {
  expect(message.content ?? null).toBe(expected.content);
  expect(message.reasoning ?? undefined).toBe(expected.reasoning);
  expect((message.tool_calls ?? []).map((c) => [c.function.name, c.function.arguments])).toEqual(expected.calls ?? []);
  for (const c of message.tool_calls ?? []) expect(c.id).toMatch(/^chatcmpl-tool-/);
  expect(finish).toBe(expected.finish);
}

describe.each(cases)('%s', (_name, content, opts, expected) => {
  it('non-streaming', () => {
    const out = nonStreaming(content, opts);
    check(out.choices[0]!.message, out.choices[0]!.finish_reason, expected);
  });

  it('streaming, SSE split at every byte boundary', async () => {
    const bytes = sse(upstreamStream(content, opts));
    const whole = await throughGateway([bytes]);
    const result = accumulateChunks(whole);
    check(result.choices[0]!.message, result.choices[0]!.finish_reason, {
      ...expected,
      content: expected.content === null ? null : expected.content,
    });
    const wholeText = JSON.stringify(result);
    for (let cut = 1; cut < bytes.length; cut += 1) {
      const split = accumulateChunks(await throughGateway([bytes.subarray(0, cut), bytes.subarray(cut)]));
      // Tool call ids of repaired calls are fresh per stream; everything else is identical.
      expect(JSON.stringify(split).replace(/chatcmpl-tool-[0-9a-f]{32}/g, 'ID')).toBe(
        wholeText.replace(/chatcmpl-tool-[0-9a-f]{32}/g, 'ID'),
      );
    }
  });
});

describe('ordinary text is never touched', () => {
  const triggerProse = fc.array(
    fc.oneof(
      fc.constantFrom(
        'analysis',
        ' analysis ',
        'final',
        'assistantfinal',
        'commentary',
        ' to=',
        'functions.',
        'json',
        '{"a":1}',
        '<',
        '<|',
        '|>',
        '<|chan',
        '<|end',
        'nel|>',
        ' <b>x</b> ',
        'analysis:',
        'analysis of',
        'commentary to=functions.',
      ),
      fc.string({ maxLength: 8 }),
      fc.json(),
    ),
    { maxLength: 30 },
  );

  it('random prose of trigger words, JSON and partial markers comes out byte-identical', async () => {
    await fc.assert(
      fc.asyncProperty(triggerProse, fc.integer({ min: 1, max: 7 }), async (parts, piece) => {
        let text = parts.join('');
        // Exact Harmony markers are what trigger repairs; remove any the generator assembled by chance.
        for (const t of ['<|start|>', '<|end|>', '<|message|>', '<|channel|>', '<|constrain|>', '<|call|>', '<|return|>'])
          text = text.replaceAll(t, '< |');
        if (/^analysis[^\s\p{P}\p{Ll}]/u.test(text) || text.startsWith('commentary to=functions.')) text = ` ${text}`;
        const out = nonStreaming(text);
        expect(out.choices[0]!.message.content).toBe(text);
        const streamed = accumulateChunks(await throughGateway([sse(upstreamStream(text, { piece }))]));
        expect(streamed.choices[0]!.message.content ?? '').toBe(text);
        expect(streamed.choices[0]!.message.reasoning).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });

  it('prose that merely starts like a leak passes too', async () => {
    for (const text of [
      'analysis of the data shows growth',
      'analysis: done',
      'commentary to=functions.foo is how Harmony addresses tools',
      'final answer: 4',
      '<|notatoken|> stays',
    ]) {
      expect(nonStreaming(text).choices[0]!.message.content).toBe(text);
      expect(accumulateChunks(await throughGateway([sse(upstreamStream(text))])).choices[0]!.message.content).toBe(text);
    }
  });
});

describe('text the reasoning strippers hold back at the end of a stream', () => {
  // A stream that ends while the stripper still holds what could begin a control token ("<|").
  const run = (field: 'reasoning' | 'reasoning_content') => {
    const t = harmonyTransform(request);
    const ctx = createContext();
    const out = [chunk({ role: 'assistant', [field]: 'Compare a <' }), chunk({ [field]: '|en' })].flatMap((c) => t.chunk!(c, ctx));
    out.push(...t.end!(ctx));
    return out.map((c) => (c.choices[0]?.delta as Record<string, string | undefined>)[field] ?? '').join('');
  };
  it.each(['reasoning', 'reasoning_content'] as const)('is flushed on %s (vLLM before 0.17 sends reasoning_content)', (field) => {
    expect(run(field)).toBe('Compare a <|en');
  });
});

describe('upstream bytes of chunks the repair leaves alone', () => {
  const run = async (chunks: ChatCompletionChunk[], transforms = [harmonyTransform(request)]) => {
    // The upstream escapes non-ASCII: a chunk serialized again would read "é", a kept one "\u00e9".
    const text = chunks.map((c) => `data: ${JSON.stringify(c).replaceAll('é', '\\u00e9')}\n\n`).join('') + 'data: [DONE]\n\n';
    const source = new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(new TextEncoder().encode(text)), c.close()) });
    const out = await new Response(transformSSE(source, transforms, createContext())).text();
    return sseData(out).filter((d) => d !== '[DONE]');
  };

  it('are kept; a repaired tool name, a finish moved after flushed text and stripped tokens are serialized', async () => {
    const out = await run([
      chunk({ role: 'assistant', content: '' }),
      chunk({ reasoning: 'Café?' }),
      chunk({ reasoning: 'Café<|end|>' }),
      chunk({ content: 'Café ' }),
      chunk({ content: 'au lait' }),
      chunk({
        tool_calls: [{ index: 0, id: 'chatcmpl-tool-x', type: 'function', function: { name: 'functions.get_weather', arguments: '' } }],
      }),
      chunk({ content: ' done' }, 'stop'),
    ]);
    const upstream = (delta: Record<string, unknown>) => JSON.stringify(chunk(delta)).replace('é', '\\u00e9');
    expect(out.filter((d) => d.includes('\\u00e9'))).toEqual([upstream({ reasoning: 'Café?' }), upstream({ content: 'Café ' })]);
    const parsed = out.map((d) => JSON.parse(d) as ChatCompletionChunk);
    const result = accumulateChunks(parsed);
    expect(result.choices[0]!.message.reasoning).toBe('Café?Café');
    expect(result.choices[0]!.message.content).toBe('Café au lait done');
    expect(result.choices[0]!.message.tool_calls?.[0]?.function.name).toBe('get_weather');
    // One finish, last: the upstream's finish chunk carried text, and its finish moved to a chunk of its own.
    expect(parsed.filter((c) => c.choices[0]?.finish_reason != null).length).toBe(1);
    expect(parsed.at(-1)!.choices[0]!.finish_reason).toBe('stop');
  });
});
