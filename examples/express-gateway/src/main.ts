import { createServer } from 'node:http';
import express from 'express';
import { clientErrorHandler, createGateway, errorHandler, fallbackHandler } from '@tera-gw/gateway';
import { serve, start } from '@tera-gw/example-shared';
import { setUpTracing } from './otel.js';

/**
 * The main job: the gateway in an Express app. Every environment variable is in the README's
 * table (`pnpm start:koa` reads the same ones); unset, it runs two embedded simulators and prints
 * a development key.
 */
const runtime = await start('express-gateway', 8787);
const stopTracing = await setUpTracing(runtime.config.tracesExporter, runtime.logger);
const gateway = createGateway(runtime.options);

const app = express();
app.disable('x-powered-by');
app.get('/health', gateway.health);
// Kubernetes' probes: live while the process serves, ready while a replica and the stores answer.
app.get('/health/live', gateway.liveness);
app.get('/health/ready', gateway.readiness);
// Prometheus scrapes here with an operator key (`authorization` in the scrape config).
app.get('/metrics', gateway.metrics);
app.use('/v1', gateway);
// Everything else is answered in the gateway's error shape too: 404, or 405 with Allow on a known path.
app.use(
  fallbackHandler({
    '/health': ['GET', 'HEAD'],
    '/health/live': ['GET', 'HEAD'],
    '/health/ready': ['GET', 'HEAD'],
    '/metrics': ['GET', 'HEAD'],
  }),
);
app.use(errorHandler());

// Slow clients may not hold a connection forever (slowloris): headers within 15 s, a whole
// request within 60 s, checked every second (Node's default check runs every 30 s).
const server = createServer(
  { headersTimeout: 15_000, requestTimeout: 60_000, connectionsCheckingInterval: 1000, keepAliveTimeout: 65_000 },
  app,
);
// Headers over Node's limit, or bytes that are not HTTP: a JSON 431 or 400, not a bare status line.
server.on('clientError', clientErrorHandler());
serve(runtime, server, {
  async close() {
    await gateway.close();
    await stopTracing?.();
  },
});
