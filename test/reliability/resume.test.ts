import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

/**
 * A replica that dies mid-stream goes unnoticed: the stream is resumed on the other replica from
 * its exact token (vLLM's token ids, `/v1/completions`), and the caller reads what an
 * uninterrupted run gives, byte for byte. Real simulator processes, killed or cut at random
 * points of reasoning, content and a tool call's arguments, through Chat Completions and the
 * Responses API, with and without usage.
 */
const model = 'openai/gpt-oss-20b';
const key = 'sk-tera-resume-key-1';
const simArgs = ['--ttft-ms', '2', '--itl-ms', '1'];
let sims: SimProcess[];
let gw: Mounted;
const outcomes: string[] = [];

beforeAll(async () => {
  sims = await Promise.all([spawnSim(simArgs), spawnSim(simArgs)]);
  gw = await mountGateway('express', {
    replicas: sims.map((s) => s.url),
    auth: { keys: [{ key, id: 'resume', concurrency: 64, tokensPerSecond: 10_000_000 }] },
    // Every stream here meets a failure: the breakers must not take both replicas out for it.
    upstream: {
      health: { intervalMs: 100 },
      breaker: { consecutiveFailures: 100_000, volumeThreshold: 100_000 },
      resume: { drainTimeoutMs: 150 },
    },
  });
  gw.gateway.upstream.events.on('resume', (_ctx, _replica, outcome) => outcomes.push(outcome));
  await until(() => gw.gateway.upstream.replicas().filter((r) => r.state === 'ready').length === 2, 15_000, 'both replicas');
});
afterAll(async () => {
  await gw?.close();
  await Promise.all(sims.map((s) => s.kill()));
});

/** What a caller reads of one stream, concatenated. */
interface Read {
  reasoning: string;
  content: string;
  args: string[];
  names: string[];
  finish: string | null | undefined;
  usage: unknown;
}

type Kind = 'answer' | 'tool';
const weather: OpenAI.ChatCompletionFunctionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] }, days: { type: 'integer' } },
      required: ['city', 'unit', 'days'],
    },
  },
};
const asked = (kind: Kind, seed: number) => ({
  messages: [
    { role: 'user' as const, content: kind === 'tool' ? 'What is the weather in Zürich?' : `Tell me about the sea, take ${seed}` },
  ],
  ...(kind === 'tool' ? { tools: [weather] } : {}),
  seed,
});

async function chat(kind: Kind, seed: number, includeUsage: boolean): Promise<Read> {
  const stream = await gw.client(key).chat.completions.create({
    model,
    ...asked(kind, seed),
    stream: true,
    ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
  });
  const out: Read = { reasoning: '', content: '', args: [], names: [], finish: undefined, usage: undefined };
  const ids = new Set<string>();
  for await (const chunk of stream) {
    ids.add(chunk.id);
    if (chunk.usage) out.usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    const delta = choice.delta as OpenAI.ChatCompletionChunk.Choice.Delta & { reasoning?: string };
    out.reasoning += delta.reasoning ?? '';
    out.content += delta.content ?? '';
    for (const call of delta.tool_calls ?? []) {
      out.args[call.index] = (out.args[call.index] ?? '') + (call.function?.arguments ?? '');
      if (call.function?.name) out.names[call.index] = call.function.name;
    }
    if (choice.finish_reason) out.finish = choice.finish_reason;
  }
  // One stream: one id from start to end, whatever replica wrote it.
  expect(ids.size).toBe(1);
  return out;
}

async function responses(kind: Kind, seed: number): Promise<Read> {
  const { messages, tools } = asked(kind, seed) as { messages: Array<{ content: string }>; tools?: OpenAI.ChatCompletionTool[] };
  const stream = await gw.client(key).responses.create({
    model,
    input: messages[0]!.content,
    ...(tools ? { tools: [{ type: 'function', name: 'get_weather', parameters: weather.function.parameters!, strict: false }] } : {}),
    stream: true,
  } as OpenAI.Responses.ResponseCreateParamsStreaming);
  const out: Read = { reasoning: '', content: '', args: [], names: [], finish: undefined, usage: undefined };
  let sequence = 0;
  let ends = 0;
  for await (const event of stream) {
    expect(event.sequence_number).toBe(sequence++);
    if (event.type === 'response.reasoning_text.delta') out.reasoning += event.delta;
    else if (event.type === 'response.output_text.delta') out.content += event.delta;
    else if (event.type === 'response.function_call_arguments.delta') out.args[0] = (out.args[0] ?? '') + event.delta;
    else if (event.type === 'response.completed' || event.type === 'response.incomplete') {
      ends++;
      out.finish = event.response.status;
      out.usage = event.response.usage;
    }
  }
  expect(ends).toBe(1);
  return out;
}

/** A small deterministic PRNG: the kill points are random, and the same on every run. */
function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function bothReady(): Promise<void> {
  await until(
    () => gw.gateway.upstream.replicas().filter((r) => r.state === 'ready' && r.breaker !== 'open').length === 2,
    15_000,
    'both replicas',
  );
}

/** A simulator killed with `process` mode is started again on its port, as a restarted pod. */
async function restartDead(): Promise<void> {
  for (let i = 0; i < sims.length; i++) {
    const sim = sims[i]!;
    if (sim.child.exitCode === null && sim.child.signalCode === null) continue;
    sims[i] = await spawnSim(simArgs, sim.port);
  }
  await bothReady();
}

describe('a replica lost mid-stream', () => {
  it(
    '100 streams cut at random points complete byte-identical to an uninterrupted run, usage counted once',
    { timeout: 240_000 },
    async () => {
      const variants = [
        { api: 'chat', kind: 'answer', usage: true },
        { api: 'chat', kind: 'answer', usage: false },
        { api: 'chat', kind: 'tool', usage: true },
        { api: 'chat', kind: 'tool', usage: false },
      ] as const;
      const clean = new Map<string, Read>();
      const lengths = new Map<string, number>();
      for (const v of variants) {
        const seed = 1000 + variants.indexOf(v);
        const read = await chat(v.kind, seed, true);
        lengths.set(v.kind + seed, (read.usage as { completion_tokens: number }).completion_tokens);
        clean.set(`${v.api}/${v.kind}/${v.usage}`, v.usage ? read : { ...read, usage: undefined });
      }
      const random = mulberry32(42);
      outcomes.length = 0;
      let processKills = 0;
      for (let i = 0; i < 100; i++) {
        const v = variants[i % variants.length]!;
        const seed = 1000 + variants.indexOf(v);
        const generated = lengths.get(v.kind + seed)!;
        // From the first visible token (after `<|channel|>analysis<|message|>`) to the last but one.
        const at = 4 + Math.floor(random() * (generated - 5));
        const mode = i % 10 === 9 ? 'process' : 'connection';
        if (mode === 'process') processKills++;
        await Promise.all(sims.map((s) => s.configure({ dieAfterTokens: { tokens: at, mode } })));
        const read = await chat(v.kind, seed, v.usage);
        await Promise.all(sims.filter((s) => s.child.exitCode === null).map((s) => s.configure({ dieAfterTokens: null })));
        const expected = clean.get(`${v.api}/${v.kind}/${v.usage}`)!;
        expect(read, `stream ${i}, cut after ${at} of ${generated} tokens (${mode})`).toEqual(expected);
        if (mode === 'process') await restartDead();
      }
      expect(processKills).toBe(10);
      expect(outcomes.filter((o) => o === 'completed')).toHaveLength(100);
      expect(outcomes.filter((o) => o === 'started')).toHaveLength(100);
    },
  );

  it('the Responses API: one sequence_number series, one response.completed, a valid continuation', { timeout: 60_000 }, async () => {
    for (const kind of ['answer', 'tool'] as const) {
      // The Responses API has no seed: the continuation is another valid one (as with sampling), so this checks the
      // event grammar and the usage, not the text.
      for (const at of [6, 20]) {
        await Promise.all(sims.map((s) => s.configure({ dieAfterTokens: { tokens: at } })));
        const read = await responses(kind, 0);
        await Promise.all(sims.map((s) => s.configure({ dieAfterTokens: null })));
        expect(read.finish).toBe('completed');
        expect(read.reasoning.length).toBeGreaterThan(0);
        expect(read.usage).toMatchObject({ output_tokens: expect.any(Number) });
      }
    }
  });
});

describe('rolling restarts', () => {
  it(
    'two replicas restarted one after the other under 32 streams: none breaks, each reads as if uninterrupted',
    { timeout: 120_000 },
    async () => {
      // Slower replicas, so the streams outlive a restart.
      await Promise.all(sims.map((s) => s.configure({ itlMs: 12 })));
      const seeds = Array.from({ length: 32 }, (_, i) => 2000 + i);
      const clean = await Promise.all(seeds.map((seed) => chat('answer', seed, true)));
      outcomes.length = 0;
      const running = Promise.all(seeds.map((seed) => chat('answer', seed, true)));
      for (let i = 0; i < sims.length; i++) {
        await new Promise((r) => setTimeout(r, 250));
        const others = sims.filter((_, j) => j !== i).map((s) => s.url);
        // Drain: no new request; the streams it runs move after the drain timeout; then it restarts and comes back.
        await gw.gateway.upstream.setReplicas(others);
        await until(() => !gw.gateway.upstream.replicas().some((r) => r.url === sims[i]!.url), 10_000, 'the drained replica to empty');
        await sims[i]!.kill('SIGTERM');
        sims[i] = await spawnSim(simArgs, sims[i]!.port);
        await sims[i]!.configure({ itlMs: 12 });
        await gw.gateway.upstream.setReplicas(sims.map((s) => s.url));
        await bothReady();
      }
      const reads = await running;
      reads.forEach((read, i) => expect(read, `stream ${i}`).toEqual(clean[i]));
      // Streams moved (some twice: moved to a replica that drained next), every one of them finished.
      expect(outcomes.filter((o) => o === 'completed').length).toBeGreaterThan(0);
      expect(outcomes.filter((o) => o !== 'started' && o !== 'completed')).toEqual([]);
      await Promise.all(sims.map((s) => s.configure({ itlMs: 1 })));
    },
  );

  it('a replica killed outright under 32 streams: they resume on the other, none breaks', { timeout: 120_000 }, async () => {
    await Promise.all(sims.map((s) => s.configure({ itlMs: 12 })));
    const seeds = Array.from({ length: 32 }, (_, i) => 3000 + i);
    const clean = await Promise.all(seeds.map((seed) => chat('answer', seed, true)));
    const running = Promise.all(seeds.map((seed) => chat('answer', seed, true)));
    await new Promise((r) => setTimeout(r, 300));
    await sims[0]!.kill('SIGKILL');
    const reads = await running;
    reads.forEach((read, i) => expect(read, `stream ${i}`).toEqual(clean[i]));
    await restartDead();
    await Promise.all(sims.map((s) => s.configure({ itlMs: 1 })));
  });
});

describe('a replica that holds token ids back (vLLM before its fix of issue 27482)', () => {
  let quirky: SimProcess[];
  let quirkyGw: Mounted;
  const quirkyOutcomes: string[] = [];

  beforeAll(async () => {
    const args = [...simArgs, '--tool-call-quirk', 'ids-skip-empty'];
    quirky = await Promise.all([spawnSim(args), spawnSim(args)]);
    quirkyGw = await mountGateway('express', {
      replicas: quirky.map((s) => s.url),
      auth: { keys: [{ key, id: 'resume', concurrency: 64, tokensPerSecond: 10_000_000 }] },
      upstream: { health: { intervalMs: 100 } },
    });
    quirkyGw.gateway.upstream.events.on('resume', (_ctx, _replica, outcome) => quirkyOutcomes.push(outcome));
    await until(() => quirkyGw.gateway.upstream.replicas().filter((r) => r.state === 'ready').length === 2, 15_000, 'both replicas');
  });
  afterAll(async () => {
    await quirkyGw?.close();
    await Promise.all(quirky.map((s) => s.kill()));
  });

  it('is not resumed from a log with holes: the cut stream ends with one error event, a clean one is untouched', async () => {
    const read = async () => {
      const stream = await quirkyGw.client(key).chat.completions.create({ model, ...asked('answer', 5), stream: true });
      let text = '';
      let finish: string | null | undefined;
      try {
        for await (const chunk of stream) {
          expect(JSON.stringify(chunk)).not.toMatch(/token_ids/);
          text += chunk.choices[0]?.delta.content ?? '';
          if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
        }
        return { text, finish, error: undefined };
      } catch (error) {
        return { text, finish, error };
      }
    };
    const clean = await read();
    expect(clean).toMatchObject({ finish: 'stop', error: undefined });
    await Promise.all(quirky.map((s) => s.configure({ dieAfterTokens: { tokens: 12 } })));
    const cut = await read();
    await Promise.all(quirky.map((s) => s.configure({ dieAfterTokens: null })));
    expect(cut.finish).toBeUndefined();
    expect(cut.error).toBeInstanceOf(OpenAI.APIError);
    // Its continuation would have been another conversation: nothing was sent for it.
    expect(quirkyOutcomes).toEqual([]);
  });
});
