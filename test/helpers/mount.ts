import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Koa from 'koa';
import mount from 'koa-mount';
import OpenAI from 'openai';
import { createGateway, type GatewayHandle, type GatewayOptions } from '@tera-gw/gateway';
import { koaGateway } from '@tera-gw/koa';

export type Framework = 'express' | 'koa';

export interface Mounted {
  url: string;
  gateway: Pick<GatewayHandle, 'ready' | 'close' | 'upstream'>;
  client(key?: string): OpenAI;
  close(): Promise<void>;
}

/** The gateway mounted under /v1 (and /health, /metrics) in a real Express or Koa app on loopback. */
export async function mountGateway(framework: Framework, options: GatewayOptions): Promise<Mounted> {
  let server: Server;
  let gateway: Mounted['gateway'];
  if (framework === 'express') {
    const gw = createGateway(options);
    const app = express();
    app.get('/health', gw.health);
    app.get('/metrics', gw.metrics);
    app.use('/v1', gw);
    server = app.listen(0, '127.0.0.1');
    gateway = gw;
  } else {
    const gw = koaGateway(options);
    const app = new Koa();
    app.use(mount('/health', gw.health));
    app.use(mount('/metrics', gw.metrics));
    app.use(mount('/v1', gw));
    server = app.listen(0, '127.0.0.1');
    gateway = gw;
  }
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    gateway,
    client: (key = 'sk-tera-test-key-1') => new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0 }),
    async close() {
      await gateway.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
