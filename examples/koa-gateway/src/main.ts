import { createServer } from 'node:http';
import Koa from 'koa';
import mount from 'koa-mount';
import { clientErrorHandler, koaGateway } from '@tera-gw/koa';
import { serve, start } from '@tera-gw/example-shared';

/** The same gateway in a Koa app, configured by the same environment variables as `pnpm start` (PORT defaults to 8788). */
const runtime = await start('koa-gateway', 8788);
const gateway = koaGateway(runtime.options);

const app = new Koa();
app.use(mount('/health/live', gateway.liveness));
app.use(mount('/health/ready', gateway.readiness));
app.use(mount('/health', gateway.health));
app.use(mount('/metrics', gateway.metrics));
app.use(mount('/v1', gateway));

const listener = app.callback();
const server = createServer({ headersTimeout: 15_000, requestTimeout: 60_000, connectionsCheckingInterval: 1000 }, (req, res) => {
  void listener(req, res);
});
server.on('clientError', clientErrorHandler());
serve(runtime, server, gateway);
