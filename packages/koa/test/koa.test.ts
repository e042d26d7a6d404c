import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import mount from 'koa-mount';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { koaGateway, toKoa } from '../src/index.js';
import { startCaptureUpstream, type CaptureUpstream } from '../../../test/helpers/capture-upstream.js';

const model = 'openai/gpt-oss-20b';
const KEY = 'sk-tera-koa-test-key';
let replica: CaptureUpstream;
let server: Server;
let url: string;
let gateway: ReturnType<typeof koaGateway>;

beforeAll(async () => {
  replica = await startCaptureUpstream();
  gateway = koaGateway({ replicas: [replica.url], auth: { keys: [{ key: KEY, id: 'koa' }] }, upstream: { health: false } });
  const app = new Koa();
  app.use(mount('/health', gateway.health));
  app.use(mount('/v1', gateway));
  // A route of the app's own, after the gateway: reached only where the gateway passes.
  app.use((ctx) => {
    ctx.body = { app: 'own route' };
  });
  server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await gateway.close();
  server.closeAllConnections();
  server.close();
  await replica.close();
});

describe('koaGateway', () => {
  it('validates its options like createGateway', () => {
    expect(() => koaGateway({ replicas: ['http://127.0.0.1:1'], auth: false, retries: 2 } as never)).toThrow(/unknown option 'retries'/);
    expect(() => koaGateway({ replicas: [], auth: false })).toThrow(/option 'replicas'/);
  });

  it('serves chat completions inside a Koa app, in the error shape when it refuses', async () => {
    const ok = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('x-tera-request-id')).toMatch(/^req_/);
    const refused = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: '{}' });
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { type: string } }).error.type).toBe('authentication_error');
    expect((await fetch(`${url}/health`)).status).toBe(200);
  });

  it('toKoa: a stage that passes lets the Koa chain go on; one that fails rejects', async () => {
    const app = new Koa();
    app.use(toKoa((_req, _res, next) => next()));
    app.use((ctx) => {
      ctx.body = 'after';
    });
    const s = app.listen(0, '127.0.0.1');
    await once(s, 'listening');
    try {
      const res = await fetch(`http://127.0.0.1:${(s.address() as AddressInfo).port}/`);
      expect(await res.text()).toBe('after');
    } finally {
      s.close();
    }
  });
});
