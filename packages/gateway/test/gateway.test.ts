import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { describe, expect, it } from 'vitest';
import { createGateway } from '../src/index.js';
import { spawnSim } from '../../../test/helpers/processes.js';

describe('createGateway options', () => {
  it.each([
    [{}, /option 'replicas'/],
    [{ replicas: ['ftp://x'], auth: false }, /option 'replicas\[0\]'/],
    [{ replicas: ['http://127.0.0.1:1'], auth: false, retries: 3 }, /unknown option 'retries'/],
    [{ replicas: ['http://127.0.0.1:1'], auth: false, upstream: { maxAttempts: 0 } }, /option 'upstream.maxAttempts'/],
    [{ replicas: ['http://127.0.0.1:1'] }, /option 'auth'/],
    [{ replicas: ['http://127.0.0.1:1'], auth: {} }, /'auth' needs `keys` or `keyStore`/],
    [{ replicas: ['http://127.0.0.1:1'], auth: false, rateLimit: { store: {} } }, /rateLimit.store/],
    [{ replicas: ['http://127.0.0.1:1'], auth: false, admission: { overflow: { afterMs: 100 } } }, /needs a provider to overflow to/],
    [{ replicas: ['http://127.0.0.1:1'], auth: false, admission: { fairness: 'weighted' } }, /option 'admission.fairness'/],
    [{ replicas: ['http://127.0.0.1:1'], auth: false, admission: { maxWaitMs: { urgent: 5 } } }, /option 'admission.maxWaitMs/],
    [{ replicas: ['http://127.0.0.1:1'], auth: { keys: [{ key: 'sk-12345678', priority: 1.5 }] } }, /priority/],
    [{ replicas: ['http://127.0.0.1:1'], auth: false, upstream: { fallback: { url: 'nope' } } }, /option 'upstream.fallback.url'/],
  ])('%j fails fast, naming the option', (options, message) => {
    expect(() => createGateway(options as never)).toThrow(message);
  });
});

describe('health and graceful shutdown', () => {
  it('health is 503 until a replica is ready; close() lets a stream finish, then refuses new requests', async () => {
    const sim = await spawnSim(['--itl-ms', '15', '--cold-start-ms', '300']);
    const gw = createGateway({ replicas: [sim.url], auth: false, upstream: { health: { intervalMs: 100 } }, shutdownGraceMs: 5000 });
    const app = express();
    app.get('/health', gw.health);
    app.use('/v1', gw);
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const early = await fetch(`${url}/health`);
      expect(early.status).toBe(503);
      await gw.ready();
      expect((await fetch(`${url}/health`)).status).toBe(200);
      const stream = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'openai/gpt-oss-20b', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      });
      const closing = gw.close();
      const refused = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'openai/gpt-oss-20b', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(refused.status).toBe(503);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('shutting_down');
      const text = await stream.text();
      expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
      await closing;
      expect((await fetch(`${url}/health`)).status).toBe(503);
    } finally {
      server.closeAllConnections();
      server.close();
      await sim.kill();
    }
  });
});
