import { createContext, loadTokenizer, transformSSE, type ChatTransform, type RequestContext } from '@tera-gw/core';
import { harmonyTransform } from '@tera-gw/harmony';
import { reasoningTransform } from '@tera-gw/reasoning';
import type { ResponseObject } from '@tera-gw/responses';
import { ResponsesStreamEncoder } from '@tera-gw/responses/internal';
import { toolCallsTransform } from '@tera-gw/tool-calls';
import { streamBody } from './fixtures.js';
import { median } from './harness.js';

/**
 * CPU per streamed event through each response transform, next to the parse-and-serialize
 * pipeline with no transform and to the bytes alone, in one process and one run; and the time
 * to the first output event on a stream with no leak (what the Harmony hold-back could add).
 */
const request = { tools: [{ type: 'function' as const, function: { name: 'get_weather' } }] };
const bytes = new TextEncoder().encode(streamBody(1000));
const chunks: Uint8Array[] = [];
for (let at = 0; at < bytes.length; at += 16 * 1024) chunks.push(bytes.subarray(at, at + 16 * 1024));

/** The Responses API's output: every transformed chunk becomes Responses events (what `/v1/responses` streams). */
function responsesOutput(ctx: RequestContext): void {
  const encoder = new ResponsesStreamEncoder({
    base: { id: 'resp_bench', object: 'response', status: 'in_progress', output: [] } as unknown as ResponseObject,
    names: new Map(),
    logprobs: false,
  });
  ctx.output = {
    completion: () => undefined,
    chunk: (c) => encoder.chunk(c),
    end: async (c) => (await encoder.end(c.usage)).text,
    error: (body) => encoder.error(body),
  };
}

const variants: Array<[string, () => ChatTransform[], ((ctx: RequestContext) => void)?]> = [
  ['parse, no transform', () => []],
  ['harmony', () => [harmonyTransform(request)]],
  ['reasoning', () => [reasoningTransform()]],
  ['tool-calls', () => [toolCallsTransform(request)]],
  ['all three (the gateway)', () => [harmonyTransform(request), reasoningTransform(), toolCallsTransform(request)]],
  ['all three + Responses events', () => [harmonyTransform(request), reasoningTransform(), toolCallsTransform(request)], responsesOutput],
];

async function once(make: () => ChatTransform[], setUp?: (ctx: RequestContext) => void): Promise<{ us: number; firstUs: number }> {
  const source = new ReadableStream<Uint8Array>({
    start(c) {
      for (const chunk of chunks) c.enqueue(chunk);
      c.close();
    },
  });
  const ctx = createContext();
  setUp?.(ctx);
  const start = process.hrtime.bigint();
  let first = 0n;
  const reader = transformSSE(source, make(), ctx).getReader();
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    if (!first) first = process.hrtime.bigint();
  }
  return { us: Number(process.hrtime.bigint() - start) / 1000, firstUs: Number(first - start) / 1000 };
}

const rounds = 7;
const perEvent: Record<string, number[]> = {};
const firstEvent: Record<string, number[]> = {};
await loadTokenizer();
for (const [, make, setUp] of variants) for (let i = 0; i < 30; i++) await once(make, setUp);
for (let r = 0; r < rounds; r++) {
  for (const [name, make, setUp] of variants) {
    const runs = 20;
    let total = 0;
    for (let i = 0; i < runs; i++) {
      const { us, firstUs } = await once(make, setUp);
      total += us;
      (firstEvent[name] ??= []).push(firstUs);
    }
    (perEvent[name] ??= []).push(total / runs / 1000);
  }
}
// The bytes alone: decoding them to text, the least any SSE relay does.
const decodeTimes: number[] = [];
for (let r = 0; r < rounds; r++) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < 20; i++) for (const c of chunks) new TextDecoder().decode(c);
  decodeTimes.push(Number(process.hrtime.bigint() - start) / 1000 / 20 / 1000);
}
const base = median(perEvent['parse, no transform']!);
console.log(`\nCPU per streamed event (1,000-event gpt-oss stream: reasoning, content, a tool call), median of ${rounds} rounds`);
console.log('variant                      us/event  added over no transform  first output event (us)');
console.log(`${'bytes decoded only'.padEnd(28)} ${median(decodeTimes).toFixed(3).padStart(8)}`);
for (const [name] of variants) {
  const v = median(perEvent[name]!);
  console.log(
    `${name.padEnd(28)} ${v.toFixed(3).padStart(8)}  ${(v - base).toFixed(3).padStart(26)}  ${median(firstEvent[name]!).toFixed(0).padStart(23)}`,
  );
}
