import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { errorHandler, requestId, validate } from '../src/index.js';
import { baseBody, coreApp } from './app.js';

const app = coreApp();
const post = (body: unknown) =>
  request(app)
    .post('/v1/chat/completions')
    .send(body as object);

function expectError(res: request.Response, status: number, type: string, param: string | null, code?: string) {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.headers['x-tera-request-id']).toMatch(/^req_/);
  expect(Object.keys(res.body)).toEqual(['error']);
  expect(res.body.error.type).toBe(type);
  expect(res.body.error.param).toBe(param);
  expect(typeof res.body.error.message).toBe('string');
  expect(res.body.error.message.length).toBeGreaterThan(10);
  if (code) expect(res.body.error.code).toBe(code);
}

describe('validation: 400 invalid_request_error with param', () => {
  it('accepts a valid body and fills the output budget', async () => {
    const res = await post(baseBody());
    expect(res.status).toBe(200);
    expect(res.body.body.max_tokens).toBe(4096);
    expect(res.body.promptTokens).toBeNull(); // small prompt: never tokenized
  });

  it('malformed JSON', async () => {
    const res = await request(app)
      .post('/v1/chat/completions')
      .set('Content-Type', 'application/json')
      .send('{"model": "openai/gpt-oss-20b", ');
    expectError(res, 400, 'invalid_request_error', null, 'invalid_json');
  });

  it('a body that is JSON but not an object', async () => {
    const res = await request(app).post('/v1/chat/completions').set('Content-Type', 'application/json').send('[1,2]');
    expectError(res, 400, 'invalid_request_error', null);
  });

  it.each([
    [{ temperature: 'hot' }, 'temperature'],
    [{ temperature: 2.5 }, 'temperature'],
    [{ temperature: -0.1 }, 'temperature'],
    [{ top_p: 0 }, 'top_p'],
    [{ top_p: 1.01 }, 'top_p'],
    [{ top_logprobs: 21, logprobs: true }, 'top_logprobs'],
    [{ top_logprobs: 3 }, 'top_logprobs'],
    [{ max_tokens: 0 }, 'max_tokens'],
    [{ max_tokens: 4097 }, 'max_tokens'],
    [{ max_completion_tokens: 5000 }, 'max_completion_tokens'],
    [{ max_tokens: 1.5 }, 'max_tokens'],
    [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    [{ stream: 'yes' }, 'stream'],
    [{ reasoning_effort: 'extreme' }, 'reasoning_effort'],
    [{ seed: 'abc' }, 'seed'],
    [{ tool_choice: 'required' }, 'tool_choice'],
    [{ stream_options: { include_usage: true } }, 'stream_options'],
    [{ response_format: { type: 'xml' } }, 'response_format.type'],
    [{ messages: [] }, 'messages'],
    [{ messages: 'hello' }, 'messages'],
    [{ model: 42 }, 'model'],
  ])('%j -> param %s', async (patch, param) => {
    const res = await post({ ...baseBody(), ...patch });
    expectError(res, 400, 'invalid_request_error', param);
  });

  it.each([
    [{ temperature: 'hot' }, "Invalid type for 'temperature': expected number, but got string."],
    [{ messages: 'hello' }, "Invalid type for 'messages': expected array, but got string."],
    [{ model: 42 }, "Invalid type for 'model': expected string, but got number."],
    [{ stream: 'yes' }, "Invalid type for 'stream': expected boolean, but got string."],
    [{ model: undefined }, "Missing required parameter: 'model'."],
    [{ messages: undefined }, "Missing required parameter: 'messages'."],
  ])('a wrong type is named as one, a missing field as missing: %j', async (patch, message) => {
    const res = await post({ ...baseBody(), ...patch });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toBe(message);
  });

  it('names the exact message field at fault', async () => {
    const body = baseBody();
    (body.messages[2] as { content: unknown }).content = 42;
    const res = await post(body);
    expectError(res, 400, 'invalid_request_error', 'messages[2].content');
  });

  it('an unknown role names the role field', async () => {
    const body = baseBody();
    (body.messages[1] as { role: string }).role = 'wizard';
    const res = await post(body);
    expectError(res, 400, 'invalid_request_error', 'messages[1].role');
  });

  it.each(['image_url', 'input_audio', 'file'])('a %s part is refused: text-only model', async (type) => {
    const body = baseBody();
    (body.messages[2] as { content: unknown }).content = [
      { type: 'text', text: 'what is this?' },
      { type, [type]: { url: 'https://example.invalid/cat.png' } },
    ];
    const res = await post(body);
    expectError(res, 400, 'invalid_request_error', 'messages[2].content[1]', 'unsupported_content');
    expect(res.body.error.message).toMatch(/text-only/);
  });

  it.each([
    [{ n: 2 }, 'n'],
    [{ audio: { voice: 'alloy', format: 'mp3' } }, 'audio'],
    [{ modalities: ['text', 'audio'] }, 'modalities'],
    [{ logit_bias: { '1234': 5 } }, 'logit_bias'],
    [{ prediction: { type: 'content', content: 'x' } }, 'prediction'],
  ])('a field the model cannot honour: %j', async (patch, param) => {
    const res = await post({ ...baseBody(), ...patch });
    expectError(res, 400, 'invalid_request_error', param);
  });

  it('n=1 and text modality are accepted and not forwarded', async () => {
    const res = await post({ ...baseBody(), n: 1, modalities: ['text'] });
    expect(res.status).toBe(200);
    expect(res.body.body).not.toHaveProperty('n');
    expect(res.body.body).not.toHaveProperty('modalities');
  });

  it('harmless OpenAI fields are accepted and not forwarded', async () => {
    const res = await post({
      ...baseBody(),
      user: 'u-1',
      safety_identifier: 's-1',
      metadata: { team: 'a' },
      store: false,
      service_tier: 'auto',
      prompt_cache_key: 'conv-7',
    });
    expect(res.status).toBe(200);
    for (const f of ['user', 'safety_identifier', 'metadata', 'store', 'service_tier', 'prompt_cache_key']) {
      expect(res.body.body).not.toHaveProperty(f);
    }
    expect(res.body.local).toEqual({ promptCacheKey: 'conv-7', user: 'u-1' });
  });

  it('vLLM extensions and every documented field pass', async () => {
    const body = {
      ...baseBody(),
      temperature: 0.7,
      top_p: 0.9,
      top_k: 40,
      min_p: 0.05,
      repetition_penalty: 1.1,
      frequency_penalty: 0.5,
      presence_penalty: -0.5,
      seed: 7,
      stop: ['\n\n'],
      logprobs: true,
      top_logprobs: 5,
      reasoning_effort: 'high',
      stream: true,
      stream_options: { include_usage: true },
      parallel_tool_calls: true,
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Weather',
            parameters: { type: 'object', properties: { city: { type: 'string' } } },
          },
        },
      ],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      response_format: { type: 'json_schema', json_schema: { name: 'answer', schema: { type: 'object' }, strict: true } },
      max_completion_tokens: 100,
    };
    const res = await post(body);
    expect(res.status).toBe(200);
    const { model, messages, ...rest } = res.body.body;
    expect(model).toBe(body.model);
    expect(messages).toEqual(body.messages);
    const { model: _m, messages: _ms, ...sent } = body;
    expect(rest).toEqual(sent);
  });

  it('a tool_choice naming an undeclared tool', async () => {
    const res = await post({
      ...baseBody(),
      tools: [{ type: 'function', function: { name: 'a' } }],
      tool_choice: { type: 'function', function: { name: 'b' } },
    });
    expectError(res, 400, 'invalid_request_error', 'tool_choice.function.name');
  });

  it('a field no API defines -> 400 naming it', async () => {
    const res = await post({ ...baseBody(), temprature: 0.5 });
    expectError(res, 400, 'invalid_request_error', 'temprature', 'unknown_parameter');
    expect(res.body.error.message).toContain('temprature');
  });

  it('lenient deployments drop unknown fields instead', async () => {
    const res = await request(coreApp({ unknownFields: 'drop' }))
      .post('/v1/chat/completions')
      .send({ ...baseBody(), temprature: 0.5 });
    expect(res.status).toBe(200);
    expect(res.body.body).not.toHaveProperty('temprature');
  });

  it('messages keep only fields the model reads', async () => {
    const body = baseBody();
    const messages = [...body.messages, { role: 'assistant', content: 'four', refusal: null, annotations: [], reasoning: 'simple sum' }];
    const res = await post({ ...body, messages });
    expect(res.status).toBe(200);
    expect(res.body.body.messages[3]).toEqual({ role: 'assistant', content: 'four', refusal: null, reasoning: 'simple sum' });
  });

  it('unknown model -> 404 model_not_found', async () => {
    const res = await post({ ...baseBody(), model: 'gpt-4o' });
    expectError(res, 404, 'model_not_found', 'model', 'model_not_found');
  });

  it('__proto__ keys pollute nothing and are refused', async () => {
    const raw =
      '{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"hi","__proto__":{"polluted":1}}],"__proto__":{"polluted":1}}';
    const res = await request(app).post('/v1/chat/completions').set('Content-Type', 'application/json').send(raw);
    expectError(res, 400, 'invalid_request_error', '__proto__', 'unknown_parameter');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('context length', () => {
  const longText = (tokens: number) => 'hello world '.repeat(tokens / 2);

  it('prompt + requested output over 131072 -> context_length_exceeded', async () => {
    const body = { ...baseBody(), messages: [{ role: 'user', content: longText(130_000) }], max_tokens: 4096 };
    const res = await post(body);
    expectError(res, 400, 'invalid_request_error', 'messages', 'context_length_exceeded');
    expect(res.body.error.message).toMatch(
      /maximum context length is 131072 tokens\. However, you requested (at least )?\d+ tokens \((at least )?\d+ in the messages, 4096 in the completion\)/,
    );
  });

  it('without max_tokens the budget shrinks to what the context leaves', async () => {
    const body = { ...baseBody(), messages: [{ role: 'user', content: longText(129_000) }] };
    const res = await post(body);
    expect(res.status).toBe(200);
    expect(res.body.promptTokens).toBeGreaterThan(128_000);
    expect(res.body.body.max_tokens).toBe(131_072 - res.body.promptTokens);
  });

  it('a prompt whose bytes are large but tokens fit is counted and passes', async () => {
    const body = { ...baseBody(), messages: [{ role: 'user', content: 'a'.repeat(200_000) }] };
    const res = await post(body);
    expect(res.status).toBe(200);
    expect(res.body.promptTokens).toBeLessThan(131_072 - 4096);
    expect(res.body.body.max_tokens).toBe(4096);
  });
});

describe('caller-controlled work is bounded', () => {
  it.each([129, 1000, 100_000, 1_000_000])('a body nested %i deep -> 400 before parsing', async (depth) => {
    const nested = '['.repeat(depth) + ']'.repeat(depth);
    for (const body of [
      `{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"hi"}],"metadata":${nested}}`,
      `{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":${nested}}]}`,
    ]) {
      const res = await request(app).post('/v1/chat/completions').set('Content-Type', 'application/json').send(body);
      expectError(res, 400, 'invalid_request_error', null, 'invalid_json');
      expect(res.body.error.message).toBe('The request body is nested more than 128 levels deep.');
    }
  });

  it('brackets inside strings do not count as nesting', async () => {
    const res = await post({ ...baseBody(), messages: [{ role: 'user', content: '[{'.repeat(500) + '\\"[' }] });
    expect(res.status).toBe(200);
  });

  it('a tool schema whose $refs double at each level -> 400 naming it', async () => {
    const $defs: Record<string, unknown> = { d24: { type: 'string' } };
    for (let i = 1; i < 24; i++) $defs[`d${i}`] = { allOf: [{ $ref: `#/$defs/d${i + 1}` }, { $ref: `#/$defs/d${i + 1}` }] };
    const tool = (name: string, parameters: unknown) => ({ type: 'function', function: { name, parameters } });
    const res = await post({
      ...baseBody(),
      tools: [tool('fine', { type: 'object' }), tool('bomb', { type: 'object', properties: { a: { $ref: '#/$defs/d1' } }, $defs })],
    });
    expectError(res, 400, 'invalid_request_error', 'tools[1].function.parameters', 'schema_too_complex');
    expect(res.body.error.message).toMatch(/^Invalid schema for function 'bomb': more than 1000 subschemas would apply to one value/);
  });

  it('a response_format schema nested too deeply -> 400 naming it', async () => {
    let schema: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 40; i++) schema = { type: 'object', properties: { a: schema } };
    const res = await post({ ...baseBody(), response_format: { type: 'json_schema', json_schema: { name: 'deep', schema } } });
    expectError(res, 400, 'invalid_request_error', 'response_format.json_schema.schema', 'schema_too_complex');
  });
});

describe('bodies from other parsers and limits', () => {
  it('works behind express.json(), and maps its parse errors', async () => {
    const app2 = express();
    app2.use(express.json({ limit: '10kb' }));
    app2.use(requestId());
    app2.post('/chat/completions', validate(), (_req, res) => void res.json({ ok: true }));
    app2.use(errorHandler());
    const ok = await request(app2).post('/chat/completions').send(baseBody());
    expect(ok.status).toBe(200);
    const bad = await request(app2).post('/chat/completions').set('Content-Type', 'application/json').send('{nope');
    expectError(bad, 400, 'invalid_request_error', null, 'invalid_json');
    const big = await request(app2)
      .post('/chat/completions')
      .send({ ...baseBody(), pad: 'x'.repeat(20_000) });
    expectError(big, 413, 'invalid_request_error', null, 'request_too_large');
  });

  it('a body over the limit -> 413 in the error shape', async () => {
    const small = coreApp({ maxBodyBytes: 1000 });
    const res = await request(small)
      .post('/v1/chat/completions')
      .send({ ...baseBody(), pad: 'x'.repeat(5000) });
    expectError(res, 413, 'invalid_request_error', null, 'request_too_large');
  });
});

describe('validate options', () => {
  it('a wrong option throws naming it', async () => {
    const { validate } = await import('../src/index.js');
    expect(() => validate({ unknownFields: 'keep' as never })).toThrow(/validate\(\): option 'unknownFields'/);
    expect(() => validate({ maxBodyBytes: 0 })).toThrow(/option 'maxBodyBytes'/);
    expect(() => validate({ aliases: { x: 1 } as never })).toThrow(/option 'aliases.x'/);
  });
});
