import Koa from 'koa';
import mount from 'koa-mount';
import { koaGateway } from '@tera-gw/koa';
import { benchGatewayOptions } from './gateway-options.js';

const gateway = koaGateway(benchGatewayOptions(process.env.UPSTREAM_URL!));
const app = new Koa();
app.use(mount('/v1', gateway));
await gateway.ready();
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`koa-gateway listening on http://127.0.0.1:${(server.address() as { port: number }).port}\n`);
});
server.keepAliveTimeout = 65_000;
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
