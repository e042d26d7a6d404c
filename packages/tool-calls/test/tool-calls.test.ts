import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TeraError, createContext, transformSSE, type ChatCompletion, type ChatCompletionChunk, type ChatTool } from '@tera-gw/core';
import { ChatCompletionAccumulator, accumulateChunks, toolCallsTransform } from '../src/index.js';

const tools: ChatTool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
    },
  },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } },
];
const base = { id: 'chatcmpl-1', object: 'chat.completion.chunk' as const, created: 1, model: 'openai/gpt-oss-20b' };
const chunk = (delta: Record<string, unknown>, finish: string | null = null): ChatCompletionChunk => ({
  ...base,
  choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
});
const tc = (entry: Record<string, unknown>) => chunk({ tool_calls: [entry] });

function run(chunks: ChatCompletionChunk[], options = {}) {
  const ctx = createContext();
  const t = toolCallsTransform({ tools }, options);
  const out = chunks.flatMap((c) => t.chunk!(structuredClone(c), ctx));
  return { out, ctx };
}

/** OpenAI's shape: per index, the first delta has id, type, name (arguments ''); later ones only arguments. */
function expectOpenAIShape(out: ChatCompletionChunk[]) {
  const seen = new Set<number>();
  for (const c of out) {
    for (const d of c.choices[0]!.delta.tool_calls ?? []) {
      if (!seen.has(d.index)) {
        seen.add(d.index);
        expect(d.id).toMatch(/^chatcmpl-tool-/);
        expect(d.type).toBe('function');
        expect(d.function?.name).toBeTruthy();
        expect(d.function?.arguments).toBe('');
      } else {
        expect(Object.keys(d).sort()).toEqual(['function', 'index']);
        expect(Object.keys(d.function!)).toEqual(['arguments']);
      }
    }
  }
}

const openaiStyle = [
  chunk({ role: 'assistant', content: '' }),
  tc({ index: 0, id: 'chatcmpl-tool-a', type: 'function', function: { name: 'get_weather', arguments: '' } }),
  tc({ index: 0, function: { arguments: '{"city":' } }),
  tc({ index: 0, function: { arguments: '"Paris"}' } }),
  chunk({}, 'tool_calls'),
];

describe('streaming repairs', () => {
  it('passes OpenAI-shaped calls unchanged in substance', () => {
    const { out, ctx } = run(openaiStyle);
    expectOpenAIShape(out);
    expect(accumulateChunks(out).choices[0]!.message.tool_calls).toEqual([
      { id: 'chatcmpl-tool-a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
    ]);
    expect(ctx.toolCalls).toEqual([{ index: 0, id: 'chatcmpl-tool-a', name: 'get_weather', arguments: '{"city":"Paris"}', valid: true }]);
  });

  it('arguments in one delta with the name -> announcement, then one fragment', () => {
    const { out } = run([
      tc({ index: 0, id: 'chatcmpl-tool-a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }),
      chunk({}, 'tool_calls'),
    ]);
    expectOpenAIShape(out);
    expect(out).toHaveLength(3);
    expect(accumulateChunks(out).choices[0]!.message.tool_calls![0]!.function.arguments).toBe('{"city":"Paris"}');
  });

  it('name repeated in every delta, id missing on later ones', () => {
    const { out } = run([
      tc({ index: 0, id: 'chatcmpl-tool-a', type: 'function', function: { name: 'get_weather', arguments: '' } }),
      tc({ index: 0, type: 'function', function: { name: 'get_weather', arguments: '{"city"' } }),
      tc({ index: 0, id: 'chatcmpl-tool-a', function: { name: 'get_weather', arguments: ':"Oslo"}' } }),
      chunk({}, 'tool_calls'),
    ]);
    expectOpenAIShape(out);
    expect(accumulateChunks(out).choices[0]!.message.tool_calls![0]!.function).toEqual({
      name: 'get_weather',
      arguments: '{"city":"Oslo"}',
    });
  });

  it('no id at all -> one is made; interleaved indexes assemble separately', () => {
    const { out } = run([
      tc({ index: 0, function: { name: 'get_weather', arguments: '{"ci' } }),
      tc({ index: 1, function: { name: 'get_time', arguments: '{"tz"' } }),
      tc({ index: 0, function: { arguments: 'ty":"Rome"}' } }),
      tc({ index: 1, function: { arguments: ':"UTC"}' } }),
      chunk({}, 'tool_calls'),
    ]);
    expectOpenAIShape(out);
    const calls = accumulateChunks(out).choices[0]!.message.tool_calls!;
    expect(calls.map((c) => [c.function.name, c.function.arguments])).toEqual([
      ['get_weather', '{"city":"Rome"}'],
      ['get_time', '{"tz":"UTC"}'],
    ]);
    expect(new Set(calls.map((c) => c.id)).size).toBe(2);
  });

  it('finish_reason stop after tool calls becomes tool_calls', () => {
    const { out } = run([...openaiStyle.slice(0, -1), chunk({}, 'stop')]);
    expect(out.at(-1)!.choices[0]!.finish_reason).toBe('tool_calls');
    const plain = run([chunk({ content: 'hi' }), chunk({}, 'stop')]);
    expect(plain.out.at(-1)!.choices[0]!.finish_reason).toBe('stop');
  });

  it('buffered mode sends each call as one complete delta at the end', () => {
    const { out } = run(openaiStyle, { mode: 'buffered' });
    const withCalls = out.filter((c) => c.choices[0]!.delta.tool_calls);
    expect(withCalls).toHaveLength(1);
    expect(withCalls[0]!.choices[0]!.delta.tool_calls).toEqual([
      { index: 0, id: 'chatcmpl-tool-a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
    ]);
  });

  it('invalid arguments: marked by default, an error in strict mode', () => {
    const broken = [
      tc({ index: 0, id: 'x', type: 'function', function: { name: 'get_weather', arguments: '{"town":1}' } }),
      chunk({}, 'tool_calls'),
    ];
    const { ctx } = run(broken);
    expect(ctx.toolCalls![0]).toMatchObject({ valid: false });
    expect(ctx.toolCalls![0]!.problem).toMatch(/do not match its schema/);
    expect(() => run(broken, { onInvalid: 'error' })).toThrow(TeraError);
    const notJson = run([
      tc({ index: 0, id: 'x', type: 'function', function: { name: 'get_weather', arguments: '{"city":' } }),
      chunk({}, 'tool_calls'),
    ]);
    expect(notJson.ctx.toolCalls![0]!.problem).toMatch(/not valid JSON/);
  });
});

describe('non-streaming repairs', () => {
  const completion = (calls: unknown[], finish = 'stop'): ChatCompletion =>
    ({
      id: 'c',
      object: 'chat.completion',
      created: 1,
      model: 'm',
      choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: calls }, logprobs: null, finish_reason: finish }],
    }) as ChatCompletion;

  it('missing ids and types are filled; stop becomes tool_calls; arguments checked', () => {
    const ctx = createContext();
    const out = toolCallsTransform({ tools }).completion!(
      completion([{ function: { name: 'get_weather', arguments: '{"city":"Lima"}' } }]),
      ctx,
    );
    const call = out.choices[0]!.message.tool_calls![0]!;
    expect(call.id).toMatch(/^chatcmpl-tool-/);
    expect(call.type).toBe('function');
    expect(out.choices[0]!.finish_reason).toBe('tool_calls');
    expect(ctx.toolCalls![0]!.valid).toBe(true);
  });

  it('no tool calls: untouched', () => {
    const body = completion([]);
    expect(toolCallsTransform({ tools }).completion!(structuredClone(body), createContext())).toEqual(body);
  });
});

describe('SSE split at arbitrary byte boundaries', () => {
  it('every two-piece split of a quirky stream yields the same repaired output', async () => {
    const quirky = [
      chunk({ role: 'assistant', content: '' }),
      chunk({ reasoning: 'thinking ✓ ' }),
      tc({ index: 0, id: 'chatcmpl-tool-a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Zürich"}' } }),
      chunk({}, 'stop'),
    ];
    const bytes = new TextEncoder().encode(quirky.map((c) => `data: ${JSON.stringify(c)}\n\n`).join('') + 'data: [DONE]\n\n');
    const read = async (parts: Uint8Array[]) => {
      const source = new ReadableStream<Uint8Array>({ start: (c) => (parts.forEach((p) => c.enqueue(p)), c.close()) });
      return new Response(transformSSE(source, [toolCallsTransform({ tools })])).text();
    };
    const whole = await read([bytes]);
    expect(whole).toContain('"finish_reason":"tool_calls"');
    for (let cut = 1; cut < bytes.length; cut += 3) expect(await read([bytes.subarray(0, cut), bytes.subarray(cut)])).toBe(whole);
  });
});

describe('property: random tool calls in random fragments are reassembled exactly', () => {
  it('through the transform and the accumulator', () => {
    const call = fc.record({ name: fc.constantFrom('get_weather', 'get_time', 'lookup'), args: fc.json() });
    fc.assert(
      fc.property(
        fc.array(call, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(12), { minLength: 1, maxLength: 30 }),
        fc.constantFrom('stop', 'tool_calls'),
        (calls, cuts, finish) => {
          // Split each call's arguments at pseudo-random points and interleave the calls.
          const streams = calls.map((c, index) => {
            const parts: ChatCompletionChunk[] = [];
            let at = 0;
            let i = 0;
            while (at < c.args.length) {
              const size = 1 + (cuts[i++ % cuts.length] ?? 1);
              const fragment = c.args.slice(at, at + size);
              parts.push(
                tc(
                  at === 0
                    ? { index, id: `chatcmpl-tool-${index}`, type: 'function', function: { name: c.name, arguments: fragment } }
                    : { index, function: { arguments: fragment } },
                ),
              );
              at += size;
            }
            return parts;
          });
          const interleaved: ChatCompletionChunk[] = [];
          for (let round = 0; streams.some((s) => s.length); round++) for (const s of streams) if (s.length) interleaved.push(s.shift()!);
          interleaved.push(chunk({}, finish));
          const ctx = createContext();
          const t = toolCallsTransform({});
          const acc = new ChatCompletionAccumulator();
          for (const c of interleaved) for (const o of t.chunk!(c, ctx)) acc.push(o);
          const result = acc.result();
          expect(result.choices[0]!.message.tool_calls!.map((c) => [c.id, c.function.name, c.function.arguments])).toEqual(
            calls.map((c, i) => [`chatcmpl-tool-${i}`, c.name, c.args]),
          );
          expect(result.choices[0]!.finish_reason).toBe('tool_calls');
        },
      ),
      { numRuns: 500 },
    );
  });
});
