import fc from 'fast-check';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createContext, TeraError, validateChatRequest } from '../src/index.js';
import { baseBody, coreApp } from './app.js';

const fields = [
  'model',
  'messages',
  'temperature',
  'top_p',
  'top_k',
  'max_tokens',
  'stop',
  'seed',
  'tools',
  'tool_choice',
  'response_format',
  'stream',
  'stream_options',
  'logprobs',
  'top_logprobs',
  'reasoning_effort',
  'n',
  '__proto__',
  'constructor',
];

let pollutionAttempts = 0;

/**
 * A valid body with one field (top level or inside a message) replaced by random JSON; for
 * `__proto__` and `constructor` the value is a pollution payload (`{polluted}`, `{prototype: {polluted}}`).
 */
const mutated = fc.tuple(fc.constantFrom(...fields), fc.jsonValue(), fc.boolean(), fc.nat(2)).map(([field, random, inMessage, index]) => {
  const body = baseBody() as Record<string, unknown>;
  const hostile = field === '__proto__' || field === 'constructor';
  if (hostile) pollutionAttempts++;
  const value = hostile ? JSON.parse(JSON.stringify({ polluted: random ?? 1, prototype: { polluted: random ?? 1 } })) : random;
  if (inMessage) {
    const messages = body.messages as Record<string, unknown>[];
    messages[index] = { ...messages[index], [field === 'messages' ? 'content' : field]: value };
  } else {
    Object.defineProperty(body, field, { value, enumerable: true, configurable: true, writable: true });
  }
  return body;
});

describe('fuzz: malformed bodies', () => {
  it('thousands of random bodies: accepted, or a 400/404 in the documented shape, never anything else', async () => {
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(fc.oneof(mutated, fc.jsonValue()), async (body) => {
        try {
          await validateChatRequest(body, JSON.stringify(body)?.length ?? 0, createContext());
        } catch (err) {
          expect(err).toBeInstanceOf(TeraError);
          const e = err as TeraError;
          expect([400, 404]).toContain(e.status);
          expect(e.toJSON().error.message.length).toBeGreaterThan(5);
          refused++;
        }
      }),
      { numRuns: 4000 },
    );
    expect(refused).toBeGreaterThan(2500);
    expect(pollutionAttempts).toBeGreaterThan(100);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('over HTTP: random bytes and random JSON always get a 4xx JSON error, never a 500', async () => {
    const app = coreApp();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string().map((s) => Buffer.from(s)),
          fc.uint8Array().map((a) => Buffer.from(a)),
          mutated.map((b) => Buffer.from(JSON.stringify(b))),
        ),
        async (raw) => {
          const res = await request(app).post('/v1/chat/completions').set('Content-Type', 'application/json').send(raw);
          if (res.status === 200) return;
          expect(res.status).toBeGreaterThanOrEqual(400);
          expect(res.status).toBeLessThan(500);
          expect(res.headers['content-type']).toMatch(/application\/json/);
          expect(typeof res.body.error.message).toBe('string');
          expect(typeof res.body.error.type).toBe('string');
        },
      ),
      { numRuns: 300 },
    );
  });
});
