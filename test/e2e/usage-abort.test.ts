import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UsageRecord } from '@tera-gw/telemetry';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';
import { sleep, until } from '../helpers/wait.js';

/**
 * A client that walks away still pays for what the replica generated: the usage record (and the
 * limiter) get the replica's own counts up to the cancellation, reasoning tokens included.
 */
const model = 'openai/gpt-oss-20b';
const KEY = 'sk-tera-abort-billing-key';
const STINGY = 'sk-tera-abort-every-stream';
let sim: SimProcess;
let gw: Mounted;
const records: UsageRecord[] = [];

beforeAll(async () => {
  // 15 ms between tokens (a busy CI loop that delays the cancellation by 50 ms costs ~3 tokens), 150 ms to the
  // first: an abort lands before the first token or mid-stream at will.
  sim = await spawnSim(['--itl-ms', '15', '--ttft-ms', '150']);
  gw = await mountGateway('express', {
    replicas: [sim.url],
    auth: {
      keys: [
        { key: KEY, id: 'abort', tokensPerSecond: 1_000_000 },
        { key: STINGY, id: 'stingy', tokensPerSecond: 5 },
      ],
    },
    rateLimit: { burstSeconds: 60 },
    upstream: { health: false },
    onUsage: (record) => records.push(record),
  });
});
afterAll(async () => {
  await gw.close();
  await sim.kill();
});

/** Streams a request and aborts once `until` holds for the SSE text read so far. */
async function abortWhen(key: string, body: object, until: (text: string) => boolean): Promise<string> {
  const controller = new AbortController();
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream: true, ...body }),
    signal: controller.signal,
  });
  const id = res.headers.get('x-tera-request-id')!;
  const reader = res.body!.getReader();
  let text = '';
  while (!until(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString();
  }
  controller.abort();
  return id;
}

/** Aborts `afterMs` after sending, before any answer arrived; the id comes from the usage record. */
async function abortBeforeAnswer(key: string, body: object, afterMs: number): Promise<void> {
  const controller = new AbortController();
  const pending = fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream: true, ...body }),
    signal: controller.signal,
  }).catch(() => undefined);
  await sleep(afterMs);
  controller.abort();
  await pending;
}

const events = (n: number) => (text: string) => text.split('\n\n').length - 1 >= n;

async function generated(): Promise<number> {
  return sim.metric('vllm:generation_tokens_total');
}

const recordOf = async (id: string) => {
  await until(() => records.some((r) => r.requestId === id), 5000, `the usage record of ${id}`);
  return records.find((r) => r.requestId === id)!;
};

describe('aborted streams are billed what the replica generated', () => {
  it('mid-reasoning: completion tokens within a few of the replica count, reasoning tokens counted, input billed', async () => {
    const before = await generated();
    const id = await abortWhen(KEY, { messages: [{ role: 'user', content: 'Explain the tides in detail.' }], max_tokens: 400 }, events(12));
    const record = await recordOf(id);
    await sleep(100);
    const replica = (await generated()) - before;
    expect(record.aborted).toBe(true);
    expect(record.abortReason).toBe('client_closed_mid_stream');
    expect(record.promptTokens).toBeGreaterThan(10);
    expect(record.completionTokens).toBeGreaterThanOrEqual(10);
    expect(Math.abs(record.completionTokens! - replica)).toBeLessThanOrEqual(8);
    expect(record.reasoningTokens).toBeGreaterThan(0);
    expect(record.reasoningTokens).toBeLessThanOrEqual(record.completionTokens!);
    expect(record.costUSD).toBeGreaterThan(0);
  });

  it('mid-tool-call: the same', async () => {
    const before = await generated();
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Get the weather for a city',
          parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] },
        },
      },
    ];
    // Into the call: after its name went out, before its arguments finished.
    const id = await abortWhen(
      KEY,
      { messages: [{ role: 'user', content: 'What is the weather in Paris?' }], tools, tool_choice: 'required' },
      (text) => text.includes('"arguments"') && text.split('"arguments"').length > 3,
    );
    const record = await recordOf(id);
    await sleep(100);
    const replica = (await generated()) - before;
    expect(record.aborted).toBe(true);
    expect(record.completionTokens).toBeGreaterThan(0);
    expect(Math.abs(record.completionTokens! - replica)).toBeLessThanOrEqual(8);
  });

  it('before the first token: the prompt is billed, no output', async () => {
    const before = await generated();
    const count = records.length;
    await abortBeforeAnswer(KEY, { messages: [{ role: 'user', content: 'A question that is never answered.' }] }, 40);
    await until(() => records.length > count, 5000, 'the usage record');
    const record = records.at(-1)!;
    expect(record.aborted).toBe(true);
    expect(record.abortReason).toBe('client_closed_before_first_token');
    expect(record.promptTokens).toBeGreaterThan(10);
    expect(record.completionTokens).toBe(0);
    expect((await generated()) - before).toBe(0);
  });

  it('the caller sees usage on every chunk only when it asked; the final usage carries reasoning tokens', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const chunks = (await res.text())
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice(6)) as { choices: unknown[]; usage?: { completion_tokens_details?: { reasoning_tokens?: number } } });
    expect(chunks.filter((c) => c.choices.length > 0 && c.usage)).toHaveLength(0);
    const final = chunks.at(-1)!;
    expect(final.choices).toEqual([]);
    expect(final.usage?.completion_tokens_details?.reasoning_tokens).toBeGreaterThan(0);
  });

  it('a key that aborts every stream still runs into its token rate limit', async () => {
    // 5 tokens/s with 60 s of burst: 300 tokens. Each aborted stream costs its prompt and ~20 generated tokens.
    let limited = false;
    for (let i = 0; i < 12 && !limited; i++) {
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${STINGY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model, stream: true, max_tokens: 60, messages: [{ role: 'user', content: `short question ${i}` }] }),
      });
      if (res.status === 429) {
        limited = true;
        break;
      }
      const reader = res.body!.getReader();
      for (let n = 0; n < 8; n++) await reader.read();
      await reader.cancel();
      await sleep(60);
    }
    expect(limited).toBe(true);
    const stingy = records.filter((r) => r.keyId === 'stingy');
    expect(stingy.length).toBeGreaterThan(0);
    for (const r of stingy) {
      expect(r.aborted).toBe(true);
      expect(r.totalTokens).toBeGreaterThan(r.promptTokens!);
    }
  });
});
