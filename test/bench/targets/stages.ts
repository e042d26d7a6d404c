import { createServer } from 'node:http';
import { context as otelContext, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BatchSpanProcessor, InMemorySpanExporter, TracerProvider } from '@opentelemetry/sdk-trace';
import { MemoryKeyStore, auth, scope } from '@tera-gw/auth';
import { compose, context, requestId, sendJSON, validate, type Middleware } from '@tera-gw/core';
import { rateLimit } from '@tera-gw/rate-limit';
import { RedisStore } from '@tera-gw/rate-limit-redis';
import { telemetry } from '@tera-gw/telemetry';
import { completionBody } from '../fixtures.js';

/** One variant of the per-request stages in front of a terminal that answers at once. */
const variant = process.env.VARIANT ?? 'base';
const completion = JSON.parse(completionBody()) as { usage: unknown };
const terminal: Middleware = (req, res) => {
  const ctx = context(req, res);
  ctx.usage = completion.usage as never;
  ctx.upstream = { attempts: 1, replica: 'http://127.0.0.1:1' };
  sendJSON(res, 200, completion);
};
const keyStore = new MemoryKeyStore([{ key: 'sk-tera-bench-key-0001', id: 'bench', concurrency: 100_000, tokensPerSecond: 1e12 }]);
const stages: Middleware[] = [requestId()];
if (variant.startsWith('auth')) {
  const store = variant.includes('redis') ? new RedisStore({ url: process.env.REDIS_URL! }) : undefined;
  stages.push(auth({ keyStore }), validate(), scope(), rateLimit(store ? { store } : {}));
} else if (variant.startsWith('telemetry')) {
  if (variant === 'telemetry(SDK)') {
    const exporter = new InMemorySpanExporter();
    const provider = new TracerProvider({ spanProcessors: [new BatchSpanProcessor({ exporter })] });
    otelContext.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(provider);
    setInterval(() => exporter.reset(), 1000).unref();
  }
  stages.push(telemetry(), validate());
} else {
  stages.push(validate());
}
stages.push(terminal);
const handler = compose(stages);
const server = createServer((req, res) => handler(req, res, () => undefined));
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`stages listening on http://127.0.0.1:${(server.address() as { port: number }).port}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
