import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { sseData } from '../helpers/sse.js';

// A replica that writes its chunks the way vLLM does with continuous usage on, escaping
// non-ASCII: serializing a chunk again would turn "\u00e9" into "é", so the bytes show which
// chunks the gateway kept and which it rebuilt.
const model = 'openai/gpt-oss-20b';
const head = `{"id":"chatcmpl-bytes","object":"chat.completion.chunk","created":1,"model":"${model}","choices":[`;
const usage = (n: number) => `,"usage":{"prompt_tokens":9,"total_tokens":${9 + n},"completion_tokens":${n},"prompt_tokens_details":null}`;
const delta = (d: string, n: number) => `${head}{"index":0,"delta":{${d}},"logprobs":null,"finish_reason":null}]${usage(n)}}`;
const upstream = [
  delta('"role":"assistant","content":""', 0),
  delta('"reasoning":"Caf\\u00e9?"', 1),
  delta('"reasoning":" Yes<|end|>"', 2),
  delta('"content":"Caf\\u00e9 "', 3),
  delta('"content":"au lait"', 4),
  `${head}{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop","stop_reason":null}]${usage(5)}}`,
  `${head}]${usage(5)}}`,
];

let replica: CaptureUpstream;
let gw: Mounted;
beforeAll(async () => {
  replica = await startCaptureUpstream((body, res) => {
    if (!body.includes('"stream":true')) {
      // The gateway's warm-up completion.
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(
        JSON.stringify({
          id: 'chatcmpl-warm',
          object: 'chat.completion',
          created: 1,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, logprobs: null, finish_reason: 'stop' }],
          usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
        }),
      );
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    if (body.includes('split me')) {
      // Unescaped multibyte text cut mid-character across two reads.
      const bytes = Buffer.from(`data: ${delta('"content":"Café 🤔 au lait"', 1)}\n\ndata: [DONE]\n\n`);
      const cut = bytes.indexOf(Buffer.from('🤔')) + 2;
      res.write(bytes.subarray(0, cut));
      return void setTimeout(() => res.end(bytes.subarray(cut)), 30);
    }
    res.end(upstream.map((d) => `data: ${d}\n\n`).join('') + 'data: [DONE]\n\n');
  });
  gw = await mountGateway('express', { replicas: [replica.url], auth: false, upstream: { health: { intervalMs: 100 } } });
  await gw.gateway.ready();
});
afterAll(async () => {
  await gw.close();
  await replica.close();
});

const stream = async (streamOptions?: object, content = 'Café?') => {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      stream: true,
      messages: [{ role: 'user', content }],
      ...(streamOptions ? { stream_options: streamOptions } : {}),
    }),
  });
  expect(res.status).toBe(200);
  return sseData(await res.text());
};

describe('streamed chunks no stage edited reach the caller as the replica wrote them', () => {
  it('without usage asked for: the same bytes less the usage member; edited chunks rebuilt', async () => {
    const out = await stream();
    const withoutUsage = (d: string) => d.replace(/,"usage":\{[^}]*\}\}$/, '}');
    // Kept: the reasoning and content deltas nothing touched.
    expect(out).toContain(withoutUsage(upstream[1]!));
    expect(out).toContain(withoutUsage(upstream[4]!));
    // Rebuilt: the stripped control token.
    expect(out.some((d) => d.includes('<|end|>'))).toBe(false);
    expect(out.some((d) => d.includes('"usage"'))).toBe(false);
    const parsed = out.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d) as { choices: Array<{ delta: Record<string, string> }> });
    expect(parsed.map((c) => c.choices[0]?.delta.reasoning ?? '').join('')).toBe('Café? Yes');
    expect(parsed.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Café au lait');
    expect(out.at(-1)).toBe('[DONE]');
  });

  it('a character cut across two reads of the upstream arrives whole', async () => {
    const out = await stream(undefined, 'split me');
    const text = out
      .filter((d) => d !== '[DONE]')
      .map((d) => (JSON.parse(d) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content ?? '')
      .join('');
    expect(text).toBe('Café 🤔 au lait');
  });

  it('with continuous usage asked for: the same bytes, usage included', async () => {
    const out = await stream({ include_usage: true, continuous_usage_stats: true });
    expect(out).toContain(upstream[1]!);
    expect(out).toContain(upstream[4]!);
  });
});
