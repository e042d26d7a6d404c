import { Agent } from 'node:http';
import express from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';

/** What a team would write without the gateway: http-proxy-middleware mounted in Express, nothing else. */
const app = express();
// Its default agent, without the 256-socket cap that would queue the memory run's 1,000 open streams (the gateway's agent has none).
const agent = new Agent({ keepAlive: true, maxFreeSockets: 64 });
app.use('/v1', createProxyMiddleware({ target: `${process.env.UPSTREAM_URL!}/v1`, changeOrigin: true, agent }));
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`express-proxy listening on http://127.0.0.1:${(server.address() as { port: number }).port}\n`);
});
server.keepAliveTimeout = 65_000;
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
