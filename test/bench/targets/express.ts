import express from 'express';
import { createGateway } from '@tera-gw/gateway';
import { benchGatewayOptions } from './gateway-options.js';

const gateway = createGateway(benchGatewayOptions(process.env.UPSTREAM_URL!));
const app = express();
app.use('/v1', gateway);
await gateway.ready();
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`express-gateway listening on http://127.0.0.1:${(server.address() as { port: number }).port}\n`);
});
server.keepAliveTimeout = 65_000;
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
