import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, describe, expect, it } from 'vitest';
import {
  context,
  createContext,
  errorHandler,
  requestId,
  transformSSE,
  validate,
  type ChatTransform,
  type Middleware,
} from '@tera-gw/core';
import { vllm } from '../src/index.js';
import { model } from './helpers.js';

/**
 * One pipeline under the relay and `transformSSE`: the same upstream bytes, failing the same way
 * after text went out, end both streams with the same error event.
 */
const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-p', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
const text = chunk({ role: 'assistant', content: '' }) + chunk({ reasoning: 'Thinking' }) + chunk({ content: 'Hello' });

const throwing: ChatTransform = {
  name: 'throws-on-world',
  chunk(c) {
    if ((c.choices[0]?.delta as { content?: string } | undefined)?.content === ' world') throw new Error('a bug in a transform');
    return [c];
  },
};

const failures: Array<[string, string, ChatTransform[]]> = [
  ['ends before [DONE]', text, []],
  ['malformed data', `${text}data: {"choices": [tru\n\n`, []],
  [
    'an error event from the engine',
    `${text}data: {"error":{"message":"EngineDeadError: engine core is dead","type":"InternalServerError","code":500}}\n\n`,
    [],
  ],
  [
    'a Harmony error event',
    `${text}data: {"error":{"message":"openai_harmony.HarmonyError: Unknown role: assistantanalysis","code":500}}\n\n`,
    [],
  ],
  [
    'an error event raised for the request',
    `${text}data: {"error":{"message":"ValueError: bad","type":"InternalServerError","code":500}}\n\n`,
    [],
  ],
  ['a throwing transform', `${text}${chunk({ content: ' world' })}${chunk({}, 'stop')}data: [DONE]\n\n`, [throwing]],
];

const servers: Server[] = [];
afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function listen(server: Server): Promise<string> {
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const lastEvent = (sse: string) => JSON.parse(sse.split('\n\n').filter(Boolean).at(-1)!.slice('data: '.length)) as unknown;

describe('the relay and transformSSE share one pipeline', () => {
  it.each(failures)('%s: the same error event from both', async (_name, body, transforms) => {
    const replica = await listen(
      createServer((req, res) => {
        if (req.url === '/health') return void res.end();
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(body);
      }),
    );
    const upstream = vllm({ replicas: [replica], health: false, outputChecks: { emptyCompletions: false, structuredOutput: false } });
    const register: Middleware = (req, res, next) => {
      context(req, res).responseTransforms.push(...transforms);
      next();
    };
    const app = express();
    app.use('/v1', requestId());
    app.post('/v1/chat/completions', validate(), register, upstream);
    app.use(errorHandler());
    const gateway = await listen(createServer(app));
    try {
      const relayed = await (
        await fetch(`${gateway}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
        })
      ).text();
      const source = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode(body));
          c.close();
        },
      });
      let inHouse = '';
      const reader = transformSSE(source, transforms, createContext()).getReader();
      for (let r = await reader.read(); !r.done; r = await reader.read()) inHouse += new TextDecoder().decode(r.value);
      expect(relayed).toContain('Hello');
      expect(lastEvent(relayed)).toEqual(lastEvent(inHouse));
      expect((lastEvent(relayed) as { error: { type: string } }).error.type).toBe('server_error');
    } finally {
      upstream.close();
    }
  });
});
