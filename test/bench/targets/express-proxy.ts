import express from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';

/** What a team would write without the gateway: http-proxy-middleware mounted in Express, nothing else. */
const app = express();
app.use('/v1', createProxyMiddleware({ target: `${process.env.UPSTREAM_URL!}/v1`, changeOrigin: true }));
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`express-proxy listening on http://127.0.0.1:${(server.address() as { port: number }).port}\n`);
});
server.keepAliveTimeout = 65_000;
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
