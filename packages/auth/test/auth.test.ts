import express from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { context, errorHandler, requestId, validate } from '@tera-gw/core';
import { MemoryKeyStore, auth, fingerprint, hashKey, scope } from '../src/index.js';

const store = new MemoryKeyStore([
  { key: 'sk-tera-good-key', id: 'good', models: ['openai/gpt-oss-20b'], concurrency: 2 },
  { sha256: hashKey('sk-tera-prehashed').toString('hex'), id: 'hashed' },
  { key: 'sk-tera-disabled', id: 'off', disabled: true },
  { key: 'sk-tera-expired', id: 'old', expiresAt: '2001-01-01' },
  { key: 'sk-tera-elsewhere', id: 'other', models: ['some/other-model'] },
]);

const app = express();
app.use(requestId());
app.post('/chat/completions', auth({ keyStore: store }), validate(), scope(), (req, res) => void res.json({ key: context(req).key }));
app.use(errorHandler());
const body = { model: 'openai/gpt-oss-20b', messages: [{ role: 'user', content: 'hi' }] };
const call = (authorization?: string) => {
  const r = request(app).post('/chat/completions');
  if (authorization !== undefined) void r.set('Authorization', authorization);
  return r.send(body);
};

describe('auth', () => {
  it('a known key puts its record (never the key) on the context', async () => {
    const res = await call('Bearer sk-tera-good-key');
    expect(res.status).toBe(200);
    expect(res.body.key).toEqual({ id: 'good', models: ['openai/gpt-oss-20b'], limits: { concurrency: 2 } });
    expect(JSON.stringify(res.body)).not.toContain('sk-tera-good-key');
    expect((await call('bearer sk-tera-prehashed')).status).toBe(200);
  });

  it.each([
    ['missing', undefined, 'missing_api_key'],
    ['wrong scheme', 'Basic dXNlcjpwYXNz', 'invalid_authorization_header'],
    ['no token', 'Bearer', 'invalid_authorization_header'],
    ['control characters', 'Bearer sk-tera-\u0001bad-key', 'invalid_api_key'],
    ['unknown', 'Bearer sk-tera-unknown-key', 'invalid_api_key'],
    ['disabled', 'Bearer sk-tera-disabled', 'api_key_disabled'],
    ['expired', 'Bearer sk-tera-expired', 'api_key_expired'],
  ])('%s -> 401 with WWW-Authenticate', async (_name, header, code) => {
    const res = header?.includes('\u0001')
      ? await request(app).post('/chat/completions').set('Authorization', 'Bearer sk-tera-\tbad-key').send(body)
      : await call(header);
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer');
    expect(res.body.error.type).toBe('authentication_error');
    expect(res.body.error.code).toBe(header?.includes('\u0001') ? 'invalid_api_key' : code);
    if (header) expect(res.text).not.toContain(header.split(' ')[1] ?? '~');
  });

  it('a key not scoped to the model -> 403 permission_error', async () => {
    const res = await call('Bearer sk-tera-elsewhere');
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ type: 'permission_error', code: 'model_not_permitted' });
  });

  it('fingerprints are short and do not reveal the key', () => {
    expect(fingerprint('sk-tera-good-key')).toMatch(/^sha256:[0-9a-f]{8}$/);
    expect(() => new MemoryKeyStore([{ sha256: 'abc' }])).toThrow(/sha256: must be 64 hex digits/);
  });
});
