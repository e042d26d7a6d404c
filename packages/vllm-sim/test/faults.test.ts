import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../src/index.js';

let sim: SimulatorHandle;
let client: OpenAI;
const model = 'openai/gpt-oss-20b';
const messages = [{ role: 'user' as const, content: 'Tell me something' }];

beforeAll(async () => {
  sim = await startSimulator();
  client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
afterAll(() => sim.close());

const metric = async (s: SimulatorHandle, name: string) => {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return Number(line?.split(' ').at(-1));
};

const fault = (name: string) => ({ headers: { 'x-sim-fault': name } });

describe('faults by header', () => {
  it('500 and 503 in vLLM error shape', async () => {
    await expect(client.chat.completions.create({ model, messages }, fault('500'))).rejects.toMatchObject({ status: 500 });
    await expect(client.chat.completions.create({ model, messages }, fault('503'))).rejects.toMatchObject({ status: 503 });
    const res = await fetch(`${sim.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'x-sim-fault': '500' },
      body: JSON.stringify({ model, messages }),
    });
    expect(await res.json()).toMatchObject({ error: { type: 'InternalServerError', code: 500 } });
  });

  it('reset-before-headers: the connection closes with no response', async () => {
    await expect(client.chat.completions.create({ model, messages }, fault('reset-before-headers'))).rejects.toBeInstanceOf(
      OpenAI.APIConnectionError,
    );
  });

  it('drop-mid-stream: some chunks, then the connection drops', async () => {
    const stream = await client.chat.completions.create({ model, messages, stream: true }, fault('drop-mid-stream'));
    let chunks = 0;
    await expect(
      (async () => {
        for await (const _ of stream) chunks++;
      })(),
    ).rejects.toThrow();
    expect(chunks).toBeGreaterThan(0);
  });

  it('malformed-sse: the SDK fails to parse the stream', async () => {
    const stream = await client.chat.completions.create({ model, messages, stream: true }, fault('malformed-sse'));
    await expect(
      (async () => {
        for await (const _ of stream) void _;
      })(),
    ).rejects.toThrow();
  });

  it('stall: headers and a chunk, then nothing until the client gives up; the abort is counted', async () => {
    const before = await metric(sim, 'vllm:request_success_total{engine="0",model_name="openai/gpt-oss-20b",finished_reason="abort"}');
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model, messages, stream: true },
      { ...fault('stall'), signal: controller.signal },
    );
    const seen: unknown[] = [];
    // The SDK ends an aborted stream either way (quietly or with an AbortError); both are fine here.
    await (async () => {
      for await (const c of stream) {
        seen.push(c);
        if (seen.length === 2) setTimeout(() => controller.abort(), 50);
      }
    })().catch(() => undefined);
    expect(seen).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 50));
    expect(await metric(sim, 'vllm:request_success_total{engine="0",model_name="openai/gpt-oss-20b",finished_reason="abort"}')).toBe(
      before + 1,
    );
  });

  it('an unknown fault name is refused', async () => {
    await expect(client.chat.completions.create({ model, messages }, fault('gremlins'))).rejects.toMatchObject({ status: 400 });
  });

  it('--fail-rate 1 fails every request until reconfigured', async () => {
    const flaky = await startSimulator({ failRate: 1 });
    try {
      const c = new OpenAI({ baseURL: `${flaky.url}/v1`, apiKey: 'x', maxRetries: 0 });
      for (let i = 0; i < 5; i++) await expect(c.chat.completions.create({ model, messages })).rejects.toMatchObject({ status: 500 });
      await fetch(`${flaky.url}/sim/config`, { method: 'POST', body: JSON.stringify({ failRate: 0, healthy: false }) });
      await expect(c.chat.completions.create({ model, messages })).resolves.toBeTruthy();
      expect((await fetch(`${flaky.url}/health`)).status).toBe(503);
    } finally {
      await flaky.close();
    }
  });
});

describe('cancellation and pacing', () => {
  it('a client that disconnects mid-stream stops generation; the abort shows in /metrics', async () => {
    const slow = await startSimulator({ itlMs: 20 });
    try {
      const c = new OpenAI({ baseURL: `${slow.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const controller = new AbortController();
      const stream = await c.chat.completions.create({ model, messages, stream: true }, { signal: controller.signal });
      let n = 0;
      await (async () => {
        for await (const _ of stream) if (++n === 5) controller.abort();
      })().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
      expect(await metric(slow, 'vllm:request_success_total{engine="0",model_name="openai/gpt-oss-20b",finished_reason="abort"}')).toBe(1);
      expect(await metric(slow, 'vllm:num_requests_running')).toBe(0);
      const generated = await metric(slow, 'vllm:generation_tokens_total');
      expect(generated).toBeGreaterThan(0);
      expect(generated).toBeLessThan(20);
    } finally {
      await slow.close();
    }
  });

  it('cold start: requests wait (num_requests_waiting) until the engine is warm, then it stays warm', async () => {
    const cold = await startSimulator({ coldStartMs: 400 });
    try {
      const c = new OpenAI({ baseURL: `${cold.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const first = c.chat.completions.create({ model, messages });
      await new Promise((r) => setTimeout(r, 100));
      expect(await metric(cold, 'vllm:num_requests_waiting')).toBe(1);
      await first;
      expect(await metric(cold, 'vllm:num_requests_waiting')).toBe(0);
      // The next request takes its first token slowly, so it can be seen while it is in the engine: running, not waiting.
      cold.configure({ ttftMs: 300 });
      const during = c.chat.completions.create({ model, messages });
      let running = 0;
      let waiting = 0;
      for (let i = 0; i < 100 && running + waiting === 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
        [running, waiting] = await Promise.all([metric(cold, 'vllm:num_requests_running'), metric(cold, 'vllm:num_requests_waiting')]);
      }
      expect({ running, waiting }).toEqual({ running: 1, waiting: 0 });
      await during;
    } finally {
      await cold.close();
    }
  });
});

describe('operations endpoints', () => {
  it('/health, /v1/models with max_model_len, /version, /metrics with vLLM names', async () => {
    const health = await fetch(`${sim.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('');
    const models = (await (await fetch(`${sim.url}/v1/models`)).json()) as { object: string; data: Array<Record<string, unknown>> };
    expect(models.object).toBe('list');
    expect(models.data[0]).toMatchObject({ id: model, object: 'model', max_model_len: 131072 });
    expect(await (await fetch(`${sim.url}/version`)).json()).toEqual({ version: '0.17.1' });
    await client.chat.completions.create({ model, messages });
    const text = await (await fetch(`${sim.url}/metrics`)).text();
    for (const name of [
      'vllm:num_requests_running',
      'vllm:num_requests_waiting',
      'vllm:prompt_tokens_total',
      'vllm:generation_tokens_total',
      'vllm:time_to_first_token_seconds_bucket',
    ]) {
      expect(text).toMatch(new RegExp(`^${name}\\{engine="0",model_name="openai/gpt-oss-20b"`, 'm'));
    }
    expect(await metric(sim, 'vllm:prompt_tokens_total')).toBeGreaterThan(0);
  });
});

describe('CLI', () => {
  const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

  it('prints the listening line and serves; stops on SIGTERM', async () => {
    const child = spawn(process.execPath, [cli, '--port', '0', '--reasoning-field', 'reasoning_content'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    const match = /^vllm-sim listening on (http:\/\/127\.0\.0\.1:\d+)\n$/.exec(line.toString());
    expect(match).not.toBeNull();
    expect((await fetch(`${match![1]}/health`)).status).toBe(200);
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(0);
  });

  it('a wrong flag exits 2 with a message naming it', async () => {
    const child = spawn(process.execPath, [cli, '--tool-call-quirk', 'wobbly'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(2);
    expect(err).toContain("unknown --tool-call-quirk 'wobbly'");
  });
});
