import { createServer } from 'node:http';
import { compose, requestId, validate } from '@tera-gw/core';
import { vllm } from '@tera-gw/vllm';

/** The vLLM adapter alone behind core's request id and validation, on a bare node:http server. */
const handler = compose([requestId(), validate(), vllm({ replicas: [process.env.UPSTREAM_URL!], health: false })]);
const server = createServer((req, res) => handler(req, res, () => undefined));
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`adapter listening on http://127.0.0.1:${(server.address() as { port: number }).port}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
