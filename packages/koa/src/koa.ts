import type { Context, Middleware as KoaMiddleware, Next } from 'koa';
import type { Middleware } from '@tera-gw/core';
import { createGatewayHandler, type GatewayHandle, type GatewayOptions } from '@tera-gw/gateway';

/**
 * Runs a connect-style stage inside Koa. If the stage answers, Koa steps aside
 * (`ctx.respond = false`); if it calls `next()`, the Koa chain continues.
 */
export function toKoa(stage: Middleware): KoaMiddleware {
  return (ctx: Context, next: Next) =>
    new Promise<void>((resolve, reject) => {
      // A Koa body parser that ran first consumed the stream; hand its result to validation.
      const parsed = (ctx.request as { body?: unknown }).body;
      if (parsed !== undefined) (ctx.req as { body?: unknown }).body = parsed;
      ctx.respond = false;
      let passed = false;
      const done = () => {
        if (!passed) resolve();
      };
      ctx.res.once('close', done);
      stage(ctx.req, ctx.res, (err) => {
        if (err !== undefined && err !== null)
          return reject(err instanceof Error ? err : new Error('a gateway stage failed', { cause: err }));
        passed = true;
        ctx.res.off('close', done);
        ctx.respond = true;
        next().then(resolve, reject);
      });
    });
}

type Probes = 'health' | 'metrics' | 'liveness' | 'readiness';

export type KoaGateway = KoaMiddleware & Omit<GatewayHandle, Probes> & Record<Probes, KoaMiddleware>;

/** The same gateway as `@tera-gw/gateway`'s, for Koa: `app.use(mount('/v1', koaGateway(options)))`. */
export function koaGateway(options: GatewayOptions): KoaGateway {
  const gateway = createGatewayHandler(options);
  return Object.assign(toKoa(gateway.handler), {
    handler: gateway.handler,
    health: toKoa(gateway.health),
    metrics: toKoa(gateway.metrics),
    liveness: toKoa(gateway.liveness),
    readiness: toKoa(gateway.readiness),
    upstream: gateway.upstream,
    ready: gateway.ready,
    close: gateway.close,
  });
}
