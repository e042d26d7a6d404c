import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import express from 'express';
import OpenAI from 'openai';
import { errorHandler, requestId, validate, type ValidateOptions } from '@tera-gw/core';
import { vllm, type VllmAdapter, type VllmOptions } from '../src/index.js';

import { sseData } from '../../../test/helpers/sse.js';

export { spawnSim, type SimProcess } from '../../../test/helpers/processes.js';

export interface TestGateway {
  url: string;
  client: OpenAI;
  upstream: VllmAdapter;
  close(): Promise<void>;
}

/** Core's stages and the adapter in an Express app on a real loopback port. */
export async function startGateway(options: VllmOptions, validateOptions: ValidateOptions = {}): Promise<TestGateway> {
  // These suites are about failover and streams; the routing suites test cache-aware routing.
  const upstream = vllm({ routing: 'least-request', ...options });
  const app = express();
  app.use('/v1', requestId());
  app.post('/v1/chat/completions', validate(validateOptions), upstream);
  app.use(errorHandler());
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    client: new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sk-test', maxRetries: 0 }),
    upstream,
    close: async () => {
      upstream.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

export const model = 'openai/gpt-oss-20b';
export { sleep, until } from '../../../test/helpers/wait.js';

/** Reads an SSE response body into its data payloads. */
export async function sseEvents(res: Response): Promise<string[]> {
  return sseData(await res.text());
}
