import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { newRequestId } from '../src/internal.js';
import { coreApp } from './app.js';

const app = coreApp();

describe('models, unknown paths, request ids', () => {
  it('GET /v1/models lists the model with its limits and prices', async () => {
    const res = await request(app).get('/v1/models');
    expect(res.status).toBe(200);
    expect(res.body.object).toBe('list');
    expect(res.body.data).toHaveLength(1);
    expect(res.body.data[0]).toMatchObject({
      id: 'openai/gpt-oss-20b',
      object: 'model',
      owned_by: 'openai',
      context_length: 131072,
      max_output_tokens: 4096,
      quantization: 'mxfp4',
    });
    expect(res.body.data[0].pricing).toMatchObject({ prompt: '0.00000007', completion: '0.00000025' });
  });

  it('GET /v1/models/{id} with the slash in the id, raw or encoded', async () => {
    for (const path of ['/v1/models/openai/gpt-oss-20b', '/v1/models/openai%2Fgpt-oss-20b']) {
      const res = await request(app).get(path);
      expect(res.status).toBe(200);
      expect(res.body.id).toBe('openai/gpt-oss-20b');
    }
    const missing = await request(app).get('/v1/models/gpt-4o');
    expect(missing.status).toBe(404);
    expect(missing.body.error.type).toBe('model_not_found');
  });

  it.each(['/v1/moderations', '/v1/embeddings', '/v1/images/generations', '/v1/fine_tuning/jobs'])('%s is not offered', async (path) => {
    const res = await request(app).post(path).send({});
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toMatch(/json/);
    expect(res.body.error.code).toBe('endpoint_not_offered');
    expect(res.body.error.message).toMatch(/not offered/);
  });

  it('unknown path -> 404, wrong method -> 405 with Allow', async () => {
    const unknown = await request(app).get('/v1/nothing-here');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ type: 'invalid_request_error', code: 'unknown_url' });
    const wrong = await request(app).get('/v1/chat/completions');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe('POST');
    expect(wrong.body.error.code).toBe('method_not_allowed');
  });

  it('an unexpected bug -> 500 in the error shape, no stack, no detail', async () => {
    const res = await request(app).get('/v1/boom');
    expect(res.status).toBe(500);
    expect(res.body).toEqual({
      error: { message: 'The gateway failed to handle this request.', type: 'server_error', code: 'internal_error', param: null },
    });
    expect(res.text).not.toContain('secret');
  });

  it('X-Tera-Request-ID is on every response and unique', async () => {
    const responses = await Promise.all([
      request(app).get('/v1/models'),
      request(app).get('/v1/nothing'),
      request(app).post('/v1/chat/completions').send('{'),
      request(app).get('/v1/boom'),
    ]);
    const ids = responses.map((r) => r.headers['x-tera-request-id']);
    for (const id of ids) expect(id).toMatch(/^req_[0-9a-f]{24}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('request ids reveal neither the process nor the traffic: consecutive ids share no prefix', () => {
    const ids = Array.from({ length: 2000 }, () => newRequestId());
    expect(new Set(ids).size).toBe(ids.length);
    let sharedPrefixes = 0;
    for (let i = 1; i < ids.length; i++) if (ids[i]!.slice(0, 10) === ids[i - 1]!.slice(0, 10)) sharedPrefixes++;
    // Random ids share their first 6 hex digits by chance about once in 16 million pairs; a counter would share them always.
    expect(sharedPrefixes).toBe(0);
    expect(ids.some((id) => id.includes(process.pid.toString(36)) && id.includes(process.pid.toString(16)))).toBe(false);
  });

  it('runs on the Node the repository pins', () => {
    const major = Number(process.version.slice(1).split('.')[0]);
    expect(major).toBe(Number(process.env.EXPECT_NODE_MAJOR ?? 24));
  });
});
