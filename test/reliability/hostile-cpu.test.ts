import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { observeTokenizerPieces } from '@tera-gw/core/internal';
import { createGateway, type Gateway } from '@tera-gw/gateway';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';

/**
 * A hostile tenant's payloads, each answered as it must be, with what bounds its cost asserted
 * where it is deterministic: a refusal before the work, a check that ran out of steps, counting
 * that stopped or never started. Every family here once cost seconds to tens of seconds of the
 * single event loop: a `$ref` chain that doubles at each level, a backtracking `pattern`, token
 * counting on long runs of white space, counting before scope and limits. What each costs in
 * CPU and in a bystander's latency is measured by `pnpm bench:hostile`, never timed here.
 */
const model = 'openai/gpt-oss-20b';
const KEY = 'sk-tera-hostile-cpu-key';
const UNSCOPED = 'sk-tera-unscoped-cpu-key';

/** What the scripted replica answers next: a tool call with these arguments, or plain text. */
let nextToolArguments: string | undefined;
let replica: CaptureUpstream;
let gateway: Gateway;
let server: Server;
let base: string;

beforeAll(async () => {
  replica = await startCaptureUpstream((body, res) => {
    const name = (JSON.parse(body) as { tools?: Array<{ function: { name: string } }> }).tools?.[0]?.function.name;
    const message =
      nextToolArguments !== undefined && name
        ? {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'call_1', type: 'function', function: { name, arguments: nextToolArguments } }],
          }
        : { role: 'assistant', content: 'ok' };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: 'chatcmpl-cpu',
        object: 'chat.completion',
        created: 1,
        model,
        choices: [{ index: 0, message, finish_reason: message.content === null ? 'tool_calls' : 'stop' }],
        usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
      }),
    );
  });
  gateway = createGateway({
    replicas: [replica.url],
    auth: {
      keys: [
        { key: KEY, id: 'hostile', tokensPerSecond: 100_000_000 },
        { key: UNSCOPED, id: 'unscoped', models: ['some-other-model'] },
      ],
    },
    upstream: { health: false },
    // Strict mode: the tool-call check's result is used, so it runs on every call.
    toolCalls: { onInvalid: 'error' },
    telemetry: false,
  });
  const app = express();
  app.use('/v1', gateway);
  server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  // Load the tokenizer once, as a warm gateway has.
  await post(KEY, { model, messages: [{ role: 'user', content: 'warm '.repeat(40_000) }] });
});

afterAll(async () => {
  await gateway.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await replica.close();
});

function post(key: string, body: unknown): Promise<Response> {
  return fetch(`${base}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Sends the payload; returns the answer, and the characters the tokenizer was handed while it was served. */
async function hostile(_name: string, key: string, body: unknown, toolArguments?: string) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  nextToolArguments = toolArguments;
  let counted = 0;
  observeTokenizerPieces((piece) => (counted += piece.length));
  try {
    const res = await post(key, text);
    const answer = (await res.json()) as { error?: { code?: string; type: string; param?: string | null } };
    return { status: res.status, answer, counted };
  } finally {
    observeTokenizerPieces(undefined);
    nextToolArguments = undefined;
  }
}

const tool = (name: string, parameters: unknown) => ({ type: 'function', function: { name, parameters } });
const ask = (extra: Record<string, unknown>) => ({ model, messages: [{ role: 'user', content: 'call the tool' }], ...extra });

describe('hostile payloads are answered, with their cost bounded before or while the work runs', () => {
  it('a 1.9 KB tool schema whose $ref chain doubles at each level (24 levels) -> 400 naming it', async () => {
    const $defs: Record<string, unknown> = { d24: { type: 'string' } };
    for (let i = 1; i < 24; i++) $defs[`d${i}`] = { allOf: [{ $ref: `#/$defs/d${i + 1}` }, { $ref: `#/$defs/d${i + 1}` }] };
    const result = await hostile(
      '$ref doubling x24',
      KEY,
      ask({ tools: [tool('f', { type: 'object', properties: { a: { $ref: '#/$defs/d1' } }, $defs })] }),
      '{"a":"x"}',
    );
    expect(result.status).toBe(400);
    expect(result.answer.error).toMatchObject({ code: 'schema_too_complex', param: 'tools[0].function.parameters' });
  });

  it('deep anyOf / oneOf products -> 400', async () => {
    const $defs: Record<string, unknown> = { leaf: { type: 'string' } };
    for (let level = 1; level <= 4; level++)
      $defs[`l${level}`] = { anyOf: Array.from({ length: 10 }, () => ({ $ref: level === 1 ? '#/$defs/leaf' : `#/$defs/l${level - 1}` })) };
    const result = await hostile('anyOf 10^4 product', KEY, ask({ tools: [tool('f', { $ref: '#/$defs/l4', $defs })] }), '"x"');
    expect(result.status).toBe(400);
  });

  it('a backtracking pattern and a 29-character value the model was steered to emit', async () => {
    const parameters = { type: 'object', properties: { s: { type: 'string', pattern: '^(a+)+$' } }, required: ['s'] };
    const result = await hostile(
      'pattern ^(a+)+$',
      KEY,
      ask({ tools: [tool('f', parameters)] }),
      JSON.stringify({ s: `${'a'.repeat(29)}!` }),
    );
    // The check ran (strict mode) and found the value wrong, in linear time.
    expect(result.status).toBe(500);
    expect(result.answer.error?.code).toBe('invalid_tool_call');
  });

  it('a 100,000-character value against the same pattern', async () => {
    const parameters = { type: 'object', properties: { s: { type: 'string', pattern: '^(a+)+$' } } };
    const result = await hostile(
      'pattern, 100k value',
      KEY,
      ask({ tools: [tool('f', parameters)] }),
      JSON.stringify({ s: `${'a'.repeat(100_000)}!` }),
    );
    expect(result.status).toBe(500);
  });

  it('a huge enum and a value outside it', async () => {
    const parameters = { type: 'object', properties: { v: { enum: Array.from({ length: 15_000 }, (_, i) => `value-${i}`) } } };
    const result = await hostile('enum of 15,000', KEY, ask({ tools: [tool('f', parameters)] }), '{"v":"value-15000"}');
    expect(result.status).toBe(500);
  });

  it('uniqueItems on a 10,000-item array from the model (past the step budget)', async () => {
    const parameters = { type: 'object', properties: { items: { type: 'array', uniqueItems: true } } };
    const items = JSON.stringify({ items: Array.from({ length: 10_000 }, (_, i) => ({ n: i, tag: 'x' })) });
    const result = await hostile('uniqueItems x10,000', KEY, ask({ tools: [tool('f', parameters)] }), items);
    expect(result.status).toBe(200);
  });

  it('allOf branches that multiply with the depth of the value run out of steps, not of time', async () => {
    const parameters = {
      $defs: { d: { type: 'object', allOf: [{ properties: { a: { $ref: '#/$defs/d' } } }, { properties: { a: { $ref: '#/$defs/d' } } }] } },
      $ref: '#/$defs/d',
    };
    let value = '{}';
    for (let i = 0; i < 40; i++) value = `{"a":${value}}`;
    const result = await hostile('allOf x value depth 40', KEY, ask({ tools: [tool('f', parameters)] }), value);
    expect(result.status).toBe(200);
  });

  it('128 tools with large schemas', async () => {
    const parameters = {
      type: 'object',
      properties: Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`p${i}`, { type: 'string', description: 'd' }])),
    };
    const tools = Array.from({ length: 128 }, (_, i) => tool(`t${i}`, parameters));
    const result = await hostile('128 tools x 150 properties', KEY, ask({ tools }), '{"p1":"x"}');
    expect([200, 400]).toContain(result.status);
  });

  it('200,000 spaces in one message are counted, in pieces', async () => {
    const result = await hostile('200k spaces', KEY, { model, messages: [{ role: 'user', content: ' '.repeat(200_000) }] });
    expect(result.status).toBe(200);
    expect(result.counted).toBeGreaterThanOrEqual(200_000);
  });

  it('a 2 MB prompt stops being counted once it is known to be over the context', async () => {
    const words = Array.from({ length: 400_000 }, (_, i) => `w${i % 997}`).join(' ');
    const result = await hostile('2 MB of words', KEY, { model, messages: [{ role: 'user', content: words }] });
    expect(result.status).toBe(400);
    expect(result.answer.error?.code).toBe('context_length_exceeded');
    // Counting stopped once the prompt was known to be over the context: far short of its 2 MB.
    expect(result.counted).toBeLessThan(1_000_000);
  });

  it('160,000 spaces from a key not scoped to the model -> 403 before any counting', async () => {
    const result = await hostile('160k spaces, unscoped key', UNSCOPED, {
      model,
      messages: [{ role: 'user', content: ' '.repeat(160_000) }],
    });
    expect(result.status).toBe(403);
    expect(result.counted).toBe(0);
  });

  it('a body nested 1,000,000 deep -> 400 without parsing it', async () => {
    const nested = '['.repeat(1_000_000) + ']'.repeat(1_000_000);
    const result = await hostile(
      'nesting x1,000,000',
      KEY,
      `{"model":"${model}","messages":[{"role":"user","content":"hi"}],"metadata":${nested}}`,
    );
    expect(result.status).toBe(400);
  });
});
