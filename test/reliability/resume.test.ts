import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { spawnSim, type SimProcess } from '../helpers/processes.js';

const model = 'openai/gpt-oss-20b';
const key = 'sk-tera-resume-key-1';
let sims: SimProcess[];
let gw: Mounted;

beforeAll(async () => {
  sims = await Promise.all([spawnSim(['--ttft-ms', '2', '--itl-ms', '1']), spawnSim(['--ttft-ms', '2', '--itl-ms', '1'])]);
  gw = await mountGateway('express', {
    replicas: sims.map((s) => s.url),
    auth: { keys: [{ key, id: 'resume', concurrency: 64, tokensPerSecond: 1_000_000 }] },
    upstream: { health: { intervalMs: 200 } },
  });
  await gw.gateway.ready(10_000);
});
afterAll(async () => {
  await gw?.close();
  await Promise.all(sims.map((s) => s.kill()));
});

interface Run {
  reasoning: string;
  content: string;
  args: string[];
  finish: string | null | undefined;
  usage: OpenAI.CompletionUsage | undefined;
  ids: Set<string>;
}

async function run(request: Partial<OpenAI.ChatCompletionCreateParamsStreaming>): Promise<Run> {
  const stream = await gw.client(key).chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'Tell me about the sea' }],
    seed: 11,
    ...request,
    stream: true,
    stream_options: { include_usage: true },
  });
  const out: Run = { reasoning: '', content: '', args: [], finish: undefined, usage: undefined, ids: new Set() };
  for await (const chunk of stream) {
    out.ids.add(chunk.id);
    const choice = chunk.choices[0];
    if (chunk.usage) out.usage = chunk.usage;
    if (!choice) continue;
    const delta = choice.delta as { reasoning?: string; content?: string | null; tool_calls?: OpenAI.ChatCompletionChunk.Choice.Delta.ToolCall[] };
    out.reasoning += delta.reasoning ?? '';
    out.content += delta.content ?? '';
    for (const call of delta.tool_calls ?? []) out.args[call.index] = (out.args[call.index] ?? '') + (call.function?.arguments ?? '');
    if (choice.finish_reason) out.finish = choice.finish_reason;
  }
  return out;
}

describe('resume', () => {
  it('a stream whose replica dies mid-way ends as if nothing happened', async () => {
    const resumes: string[] = [];
    gw.gateway.upstream.events.on('resume', (_ctx, _replica, outcome) => resumes.push(outcome));
    const clean = await run({});
    for (const at of [5, 20, 45]) {
      await Promise.all(sims.map((s) => s.configure({ dieAfterTokens: { tokens: at } })));
      const resumed = await run({});
      await Promise.all(sims.map((s) => s.configure({ dieAfterTokens: null })));
      expect(resumed.reasoning).toBe(clean.reasoning);
      expect(resumed.content).toBe(clean.content);
      expect(resumed.finish).toBe(clean.finish);
      expect(resumed.usage).toEqual(clean.usage);
      expect(resumed.ids.size).toBe(1);
    }
    expect(resumes).toEqual(['started', 'completed', 'started', 'completed', 'started', 'completed']);
  });
});
