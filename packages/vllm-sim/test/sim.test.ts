import { Validator } from '@cfworker/json-schema';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countPromptTokens, countTextTokens } from '@tera-gw/core';
import { startSimulator, type SimulatorHandle } from '../src/index.js';
import { sseData } from '../../../test/helpers/sse.js';

let sim: SimulatorHandle;
let client: OpenAI;
const model = 'openai/gpt-oss-20b';

beforeAll(async () => {
  sim = await startSimulator();
  client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(() => sim.close());

const weatherTool = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'Get the current weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};
const timeTool = {
  type: 'function' as const,
  function: {
    name: 'get_time',
    description: 'Look up the local clock time in a timezone',
    parameters: { type: 'object', properties: { timezone: { type: 'string' } }, required: ['timezone'] },
  },
};

type WithReasoning = { reasoning?: string; reasoning_content?: string };

async function rawSSE(body: object, headers: Record<string, string> = {}) {
  const res = await fetch(`${sim.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model, stream: true, ...body }),
  });
  return { res, text: await res.text() };
}

const events = sseData;

describe('non-streaming', () => {
  it('answers with reasoning then content, and usage counted with o200k_harmony', async () => {
    const messages = [{ role: 'user' as const, content: 'Explain prefix caching briefly.' }];
    const res = await client.chat.completions.create({ model, messages, seed: 3 });
    const message = res.choices[0]!.message as (typeof res.choices)[0]['message'] & WithReasoning;
    expect(res.object).toBe('chat.completion');
    expect(res.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect(res.model).toBe(model);
    expect(message.role).toBe('assistant');
    expect(message.content!.length).toBeGreaterThan(20);
    expect(message.reasoning).toMatch(/^The user asks: "Explain prefix caching briefly\."/);
    expect(message).not.toHaveProperty('reasoning_content');
    expect(res.choices[0]!.finish_reason).toBe('stop');
    expect(res.usage!.prompt_tokens).toBe(await countPromptTokens({ messages }));
    expect(res.usage!.completion_tokens).toBe(countTextTokens(message.reasoning!) + countTextTokens(message.content!));
    expect(res.usage!.total_tokens).toBe(res.usage!.prompt_tokens + res.usage!.completion_tokens);
  });

  it('the same seed gives the same text; another seed other text', async () => {
    const ask = (seed: number) => client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hello' }], seed });
    const [a, b, c] = await Promise.all([ask(1), ask(1), ask(2)]);
    const strip = (r: typeof a) => ({ ...r, id: '', created: 0 });
    expect(strip(a)).toEqual(strip(b));
    expect(a.choices[0]!.message.content).not.toBe(c.choices[0]!.message.content);
  });

  it('X-Request-Id becomes the response id, as in vLLM', async () => {
    const res = await client.chat.completions.create(
      { model, messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'X-Request-Id': 'req_abc' } },
    );
    expect(res.id).toBe('chatcmpl-req_abc');
  });

  it('max_tokens reached -> truncated output, finish_reason length', async () => {
    const res = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Tell me a story' }],
      max_tokens: 30,
      seed: 5,
    });
    expect(res.choices[0]!.finish_reason).toBe('length');
    expect(res.usage!.completion_tokens).toBe(30);
    const small = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Tell me a story' }],
      max_tokens: 5,
      seed: 5,
    });
    expect(small.choices[0]!.finish_reason).toBe('length');
    expect((small.choices[0]!.message as WithReasoning).reasoning).toBe('The user asks: "');
  });

  it('stop strings are honoured', async () => {
    const base = { model, messages: [{ role: 'user' as const, content: 'Say things' }], seed: 9 };
    const full = await client.chat.completions.create(base);
    const text = full.choices[0]!.message.content!;
    const stop = text.split(' ')[3]!;
    const cut = await client.chat.completions.create({ ...base, stop: [stop] });
    expect(cut.choices[0]!.message.content).toBe(text.slice(0, text.indexOf(stop)));
    expect(cut.choices[0]!.finish_reason).toBe('stop');
    expect((cut.choices[0] as unknown as { stop_reason: string }).stop_reason).toBe(stop);
  });

  it('logprobs and top_logprobs are well-formed', async () => {
    const res = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'hi' }],
      logprobs: true,
      top_logprobs: 3,
      seed: 1,
    });
    const entries = res.choices[0]!.logprobs!.content!;
    expect(entries.map((e) => e.token).join('')).toBe(res.choices[0]!.message.content);
    for (const e of entries) {
      expect(e.logprob).toBeLessThanOrEqual(0);
      expect(e.bytes).toEqual([...Buffer.from(e.token)]);
      expect(e.top_logprobs).toHaveLength(3);
      expect(e.top_logprobs[0]!.token).toBe(e.token);
    }
  });

  it('json_object -> valid JSON; json_schema -> content valid against the schema', async () => {
    const obj = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'json please' }],
      response_format: { type: 'json_object' },
    });
    expect(typeof JSON.parse(obj.choices[0]!.message.content!)).toBe('object');
    const schema = {
      type: 'object',
      properties: {
        name: { type: 'string', minLength: 3 },
        age: { type: 'integer', minimum: 18, maximum: 99 },
        tier: { enum: ['free', 'pro'] },
        address: {
          type: 'object',
          properties: { city: { type: 'string' }, zip: { type: 'string' } },
          required: ['city'],
          additionalProperties: false,
        },
        tags: { type: 'array', items: { type: 'string' }, minItems: 2, maxItems: 4 },
        ratio: { type: 'number', minimum: 0, maximum: 1 },
        active: { type: 'boolean' },
        ref: { $ref: '#/$defs/point' },
      },
      required: ['name', 'age', 'tier', 'address', 'tags', 'ref'],
      additionalProperties: false,
      $defs: { point: { type: 'object', properties: { x: { type: 'number' }, y: { type: 'number' } }, required: ['x', 'y'] } },
    };
    for (const seed of [1, 2, 3, 4, 5]) {
      const res = await client.chat.completions.create({
        model,
        seed,
        messages: [{ role: 'user', content: 'make a user' }],
        response_format: { type: 'json_schema', json_schema: { name: 'user', schema, strict: true } },
      });
      const result = new Validator(schema as never, '2020-12').validate(JSON.parse(res.choices[0]!.message.content!));
      expect(result.errors).toEqual([]);
    }
  });
});

describe('tool calls', () => {
  const ask = (content: string, extra: Partial<OpenAI.ChatCompletionCreateParamsNonStreaming> = {}) =>
    client.chat.completions.create({ model, messages: [{ role: 'user', content }], tools: [weatherTool, timeTool], seed: 4, ...extra });

  it('auto calls the tool the message mentions, with arguments that satisfy its schema', async () => {
    const res = await ask('What is the weather like in Paris?');
    const calls = res.choices[0]!.message.tool_calls!;
    expect(res.choices[0]!.finish_reason).toBe('tool_calls');
    expect(res.choices[0]!.message.content).toBeNull();
    expect(calls).toHaveLength(1);
    const call = calls[0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.id).toMatch(/^chatcmpl-tool-[0-9a-f]{32}$/);
    expect(call.function.name).toBe('get_weather');
    expect(new Validator(weatherTool.function.parameters as never).validate(JSON.parse(call.function.arguments)).valid).toBe(true);
  });

  it('two matching tools -> two parallel calls; parallel_tool_calls false -> one', async () => {
    const res = await ask('What is the weather and the local clock time in Lima?');
    expect(res.choices[0]!.message.tool_calls!.map((c) => (c as OpenAI.ChatCompletionMessageFunctionToolCall).function.name)).toEqual([
      'get_weather',
      'get_time',
    ]);
    const one = await ask('What is the weather and the local clock time in Lima?', { parallel_tool_calls: false });
    expect(one.choices[0]!.message.tool_calls).toHaveLength(1);
  });

  it('auto without a match answers; none never calls; required and named always call', async () => {
    const plain = await ask('Write a haiku');
    expect(plain.choices[0]!.message.tool_calls).toEqual([]);
    expect(plain.choices[0]!.finish_reason).toBe('stop');
    const none = await ask('What is the weather in Paris?', { tool_choice: 'none' });
    expect(none.choices[0]!.message.tool_calls).toEqual([]);
    const required = await ask('Write a haiku', { tool_choice: 'required' });
    expect(required.choices[0]!.message.tool_calls).toHaveLength(1);
    const named = await ask('Write a haiku', { tool_choice: { type: 'function', function: { name: 'get_time' } } });
    expect((named.choices[0]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall).function.name).toBe('get_time');
  });

  it("a coding agent's tools: a request to list files calls the command tool with a harmless command and only what it requires", async () => {
    // Codex's exec_command (as Codex 0.169 sends it) beside a tool whose words overlap the request.
    const execCommand = {
      type: 'function' as const,
      function: {
        name: 'exec_command',
        description: 'Runs a command in a PTY, returning output or a session ID for ongoing interaction.',
        parameters: {
          type: 'object',
          properties: {
            cmd: { type: 'string' },
            login: { type: 'boolean' },
            max_output_tokens: { type: 'number' },
            sandbox_permissions: { type: 'string', enum: ['use_default', 'require_escalated'] },
            shell: { type: 'string' },
            workdir: { type: 'string' },
            yield_time_ms: { type: 'number' },
          },
          required: ['cmd'],
          additionalProperties: false,
        },
      },
    };
    const spawnAgent = {
      type: 'function' as const,
      function: {
        name: 'spawn_agent',
        description: 'Spawn a sub-agent to work on files here in parallel and list its findings.',
        parameters: {
          type: 'object',
          properties: { task: { type: 'string' }, model: { type: 'string', enum: ['fast', 'deep'] }, depth: { type: 'integer' } },
          required: ['task', 'model', 'depth'],
        },
      },
    };
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const res = await client.chat.completions.create({
        model,
        seed,
        messages: [{ role: 'user', content: 'List the files here' }],
        tools: [spawnAgent, execCommand],
      });
      const calls = res.choices[0]!.message.tool_calls! as OpenAI.ChatCompletionMessageFunctionToolCall[];
      expect(calls.map((c) => c.function.name)).toEqual(['exec_command']);
      expect(JSON.parse(calls[0]!.function.arguments)).toEqual({ cmd: 'ls' });
      const named = await client.chat.completions.create({
        model,
        seed,
        messages: [{ role: 'user', content: 'go' }],
        tools: [spawnAgent],
        tool_choice: { type: 'function', function: { name: 'spawn_agent' } },
      });
      const args = JSON.parse(
        (named.choices[0]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall).function.arguments,
      );
      expect(new Validator(spawnAgent.function.parameters as never).validate(args).errors).toEqual([]);
      expect(Number.isInteger(args.depth)).toBe(true);
    }
  });

  it('after a tool result the model answers with it', async () => {
    const first = await ask('What is the weather in Paris?');
    const call = first.choices[0]!.message.tool_calls![0]!;
    const res = await client.chat.completions.create({
      model,
      tools: [weatherTool],
      messages: [
        { role: 'user', content: 'What is the weather in Paris?' },
        first.choices[0]!.message,
        { role: 'tool', tool_call_id: call.id, content: '{"temp": 21}' },
      ],
    });
    expect(res.choices[0]!.message.content).toContain('{"temp": 21}');
  });

  it('streams tool calls in OpenAI shape; the SDK helper assembles them', async () => {
    const stream = client.chat.completions.stream({
      model,
      messages: [{ role: 'user', content: 'weather and clock time in Oslo?' }],
      tools: [weatherTool, timeTool],
      seed: 4,
    });
    const final = await stream.finalChatCompletion();
    const nonStream = await ask('weather and clock time in Oslo?');
    expect(final.choices[0]!.finish_reason).toBe('tool_calls');
    const names = (m: OpenAI.ChatCompletionMessage) =>
      m.tool_calls!.map((c) => [c.id, (c as OpenAI.ChatCompletionMessageFunctionToolCall).function]);
    expect(names(final.choices[0]!.message)).toEqual(names(nonStream.choices[0]!.message));
  });

  it.each([
    [
      'single-delta',
      (d: string[]) => {
        // The whole call in one delta: exactly one event carries arguments, and it names the function.
        const withArgs = d.filter((e) => e.includes('"arguments":"') && !e.includes('"arguments":""'));
        expect(withArgs).toHaveLength(1);
        expect(withArgs[0]).toContain('"name":"get_weather"');
        const call = (JSON.parse(withArgs[0]!) as { choices: Array<{ delta: { tool_calls: Array<{ function: { arguments: string } }> } }> })
          .choices[0]!.delta.tool_calls[0]!;
        expect(JSON.parse(call.function.arguments)).toMatchObject({ city: 'Rome' });
      },
    ],
    [
      'repeat-name',
      (d: string[]) => {
        // Arguments in several fragments, each repeating the name.
        const fragments = d.filter((e) => e.includes('"arguments":"') && !e.includes('"arguments":""'));
        expect(fragments.length).toBeGreaterThan(1);
        for (const e of fragments) expect(e).toContain('"name":"get_weather"');
      },
    ],
    ['stop-finish', (d: string[]) => expect(d.some((e) => e.includes('"finish_reason":"stop"'))).toBe(true)],
  ])('quirk %s (header x-sim-quirk)', async (quirk, check) => {
    const { text } = await rawSSE(
      { messages: [{ role: 'user', content: 'weather in Rome?' }], tools: [weatherTool], seed: 1 },
      { 'x-sim-quirk': quirk },
    );
    const data = events(text);
    expect(data.at(-1)).toBe('[DONE]');
    check(data.filter((e) => e.includes('tool_calls') || e.includes('finish_reason":"')));
  });
});

describe('streaming', () => {
  it('role, reasoning deltas, content deltas, finish, usage chunk with choices [], [DONE]', async () => {
    const body = { messages: [{ role: 'user', content: 'Hi there' }], seed: 11, stream_options: { include_usage: true } };
    const { res, text } = await rawSSE(body);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const data = events(text);
    expect(data.at(-1)).toBe('[DONE]');
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    for (const c of chunks) expect(c.object).toBe('chat.completion.chunk');
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    const kinds = chunks.slice(1, -2).map((c) => Object.keys(c.choices[0].delta)[0]);
    expect(kinds.indexOf('content')).toBeGreaterThan(kinds.lastIndexOf('reasoning'));
    const usageChunk = chunks.at(-1);
    expect(usageChunk.choices).toEqual([]);
    expect(chunks.at(-2).choices[0].finish_reason).toBe('stop');
    const nonStream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hi there' }], seed: 11 });
    const content = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    const reasoning = chunks.map((c) => c.choices[0]?.delta?.reasoning ?? '').join('');
    expect(content).toBe(nonStream.choices[0]!.message.content);
    expect(reasoning).toBe((nonStream.choices[0]!.message as WithReasoning).reasoning);
    expect(usageChunk.usage).toEqual(nonStream.usage);
  });

  it('continuous_usage_stats puts running usage on every chunk', async () => {
    const { text } = await rawSSE({
      messages: [{ role: 'user', content: 'Hi' }],
      stream_options: { include_usage: true, continuous_usage_stats: true },
    });
    const chunks = events(text)
      .slice(0, -1)
      .map((d) => JSON.parse(d));
    expect(chunks.length).toBeGreaterThan(5);
    for (const c of chunks) expect(c.usage).toBeTruthy();
    const counts = chunks.map((c) => c.usage.completion_tokens);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
  });

  it('the SDK reads the stream; summed reasoning deltas equal the non-streamed reasoning', async () => {
    const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Why?' }], seed: 21, stream: true });
    let reasoning = '';
    let content = '';
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as { content?: string; reasoning?: string } | undefined;
      reasoning += delta?.reasoning ?? '';
      content += delta?.content ?? '';
    }
    const once = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Why?' }], seed: 21 });
    expect(content).toBe(once.choices[0]!.message.content);
    expect(reasoning).toBe((once.choices[0]!.message as WithReasoning).reasoning);
  });
});

describe('flavours', () => {
  it('--reasoning-field reasoning_content, streaming and not; /version follows', async () => {
    const old = await startSimulator({ reasoningField: 'reasoning_content' });
    try {
      const c = new OpenAI({ baseURL: `${old.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const res = await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });
      const message = res.choices[0]!.message as WithReasoning;
      expect(message.reasoning_content!.length).toBeGreaterThan(10);
      expect(message).not.toHaveProperty('reasoning');
      const text = await (
        await fetch(`${old.url}/v1/chat/completions`, {
          method: 'POST',
          body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
        })
      ).text();
      expect(text).toContain('"delta":{"reasoning_content":');
      expect(text).not.toContain('"reasoning":');
      expect(await (await fetch(`${old.url}/version`)).json()).toEqual({ version: '0.10.2' });
    } finally {
      await old.close();
    }
  });
});

describe('errors as vLLM sends them', () => {
  it('context overflow -> 400 with vLLM message, nested by default and flat for older releases', async () => {
    const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'word '.repeat(131_000) }], max_tokens: 100 });
    const res = await fetch(`${sim.url}/v1/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: { message: string; type: string; code: number; param: null } };
    expect(json.error.type).toBe('BadRequestError');
    expect(json.error.code).toBe(400);
    expect(json.error.message).toMatch(
      /^This model's maximum context length is 131072 tokens\. However, you requested \d+ tokens \(\d+ in the messages, 100 in the completion\)\. Please reduce the length of the messages or completion\.$/,
    );
    const flat = await startSimulator({ errorFormat: 'flat' });
    try {
      const r = await fetch(`${flat.url}/v1/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      const j = (await r.json()) as Record<string, unknown>;
      expect(j).toMatchObject({ object: 'error', type: 'BadRequestError', code: 400, param: null });
    } finally {
      await flat.close();
    }
  });

  it('unknown model -> 404 NotFoundError', async () => {
    const res = await fetch(`${sim.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'x', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('NotFoundError');
  });
});

describe('--max-num-seqs', () => {
  const gauge = async (url: string, name: string) => {
    const text = await (await fetch(`${url}/metrics`)).text();
    return Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text)![1]);
  };
  const post = (url: string, content: string, maxTokens: number, signal?: AbortSignal) =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content }], max_tokens: maxTokens }),
      signal: signal ?? null,
    }).then(async (r) => ({ status: r.status, body: await r.text() }));

  it('runs N at once, the rest wait in order; metrics count both; a request cancelled while waiting never runs', async () => {
    // 50 ms a token: `short` ends after about 8 tokens, `long` runs on for 60.
    const small = await startSimulator({ maxNumSeqs: 2, itlMs: 50 });
    /** Polls the two gauges until they read [running, waiting], for up to a second. */
    const batch = async (running: number, waiting: number) => {
      let seen: number[] = [];
      for (let i = 0; i < 50; i++) {
        seen = [await gauge(small.url, 'vllm:num_requests_running'), await gauge(small.url, 'vllm:num_requests_waiting')];
        if (seen[0] === running && seen[1] === waiting) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(seen).toEqual([running, waiting]);
    };
    try {
      const short = post(small.url, 'short', 8);
      const long = post(small.url, 'long', 60);
      // If an assertion fails midway, closing the simulator rejects what is still open: not an unhandled error.
      for (const open of [short, long]) open.catch(() => undefined);
      await batch(2, 0);
      // As vLLM: KV usage is what running requests hold.
      expect(await gauge(small.url, 'vllm:kv_cache_usage_perc')).toBeGreaterThan(0);
      const aborter = new AbortController();
      const cancelled = post(small.url, 'cancelled', 4, aborter.signal).catch(() => 'aborted');
      await batch(2, 1);
      const waiting = post(small.url, 'waiting', 4);
      waiting.catch(() => undefined);
      await batch(2, 2);
      aborter.abort();
      expect(await cancelled).toBe('aborted');
      await batch(2, 1);
      expect((await short).status).toBe(200);
      // The place `short` freed went to `waiting` at once, not to the cancelled request, while `long` still runs.
      await batch(2, 0);
      const replies = [await short, await long, await waiting];
      expect(replies.map((r) => r.status)).toEqual([200, 200, 200]);
      await batch(0, 0);
      // Prefixes stay cached after the requests end, but no request holds them: free, as vLLM counts them.
      expect(await gauge(small.url, 'vllm:kv_cache_usage_perc')).toBe(0);
      // Three ran; the cancelled one never reached the engine: no prompt and no generated token of its own.
      const usages = replies.map((r) => (JSON.parse(r.body) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage);
      expect(await gauge(small.url, 'vllm:prompt_tokens_total')).toBe(usages.reduce((n, u) => n + u.prompt_tokens, 0));
      expect(await gauge(small.url, 'vllm:generation_tokens_total')).toBe(usages.reduce((n, u) => n + u.completion_tokens, 0));
    } finally {
      await small.close();
    }
  });
});
