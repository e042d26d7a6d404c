import { createServer } from 'node:http';
import { errorHandler, requestId, validate, type Middleware } from '@tera-gw/core';
import { vllm } from '@tera-gw/vllm';

/** The vLLM adapter alone behind core's request id and validation, on a bare node:http server. */
const upstream = vllm({ replicas: [process.env.UPSTREAM_URL!], health: false });
const stages: Middleware[] = [requestId(), validate(), upstream];
const onError = errorHandler();

const server = createServer((req, res) => {
  let i = 0;
  const next = (err?: unknown): void => {
    if (err !== undefined) return onError(err, req, res, next);
    const stage = stages[i++];
    if (stage) stage(req, res, next);
  };
  next();
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`adapter listening on http://127.0.0.1:${(server.address() as { port: number }).port}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
