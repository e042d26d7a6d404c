import type { IncomingMessage, ServerResponse } from 'node:http';
import { consoleLogger, context, requestId, sendError, serviceUnavailable, type Middleware, type NextFunction } from '@tera-gw/core';
import { vllm, type VllmAdapter } from '@tera-gw/vllm';
import { parseGatewayOptions, type GatewayOptions } from './options.js';
import { accessLog, logLifecycle } from './logs.js';
import { healthHandler, livenessHandler, metricsHandler, readinessHandler } from './probes.js';
import { buildRoutes, routeOf, type Operation } from './routes.js';
import { buildStages } from './stages.js';

export type { GatewayOptions };

export interface GatewayHandle {
  /** The whole API as one connect-style handler, for any framework or a bare node:http server. */
  readonly handler: Middleware;
  /**
   * `GET /health`: 200 when at least one replica is ready, 503 otherwise; `{status}` only, plus
   * replica states for an operator key (option `health.details`).
   */
  readonly health: Middleware;
  /**
   * `GET /metrics`: the gateway's OpenTelemetry metrics in Prometheus text format (per-key
   * `tera_usage_tokens_total`, `tera_usage_cost_usd_total`, `tera_requests_total`,
   * `tera_budget_remaining_usd`, and the GenAI metrics), for operator keys (option `prometheus`).
   */
  readonly metrics: Middleware;
  /** `GET /health/live`, Kubernetes' liveness probe: 200 while the process serves, 503 once it is shutting down. */
  readonly liveness: Middleware;
  /**
   * `GET /health/ready`, Kubernetes' readiness probe: 200 when a replica is ready and the stores
   * the gateway needs answer; 503 before, while draining and with no replica ready.
   */
  readonly readiness: Middleware;
  readonly upstream: VllmAdapter;
  /** Resolves once a replica is warm. */
  readonly ready: (timeoutMs?: number) => Promise<void>;
  /** Stops taking requests, lets streams in flight finish up to the grace period, releases leases, stops health checks. */
  readonly close: () => Promise<void>;
}

/**
 * The gateway as one connect-style handler with its handle's methods: Express mounts it as is
 * (`app.use('/v1', gateway)`), so the package needs no framework of its own.
 */
export type Gateway = Middleware & GatewayHandle;

/** The framework-free gateway: every stage in ARCHITECTURE.md's order, shared by Express and Koa. */
export function createGatewayHandler(input: GatewayOptions): GatewayHandle {
  const options = parseGatewayOptions(input);
  const logger = options.logger ?? consoleLogger();
  const upstream = vllm({ replicas: options.replicas, ...options.upstream });
  const stages = buildStages(options, upstream, logger);
  const routes = buildRoutes(options, stages, upstream);
  const stamp = requestId();
  let closing = false;
  let inFlight = 0;
  const drained: Array<() => void> = [];

  logLifecycle(upstream, logger);
  const access = accessLog(logger, options.prices);

  /**
   * A request that takes a route: logged once it ends, refused while shutting down, else counted
   * until it ends (close() waits for it).
   */
  const admit = (req: IncomingMessage, res: ServerResponse, next: NextFunction, [operation, handler]: [Operation, Middleware]) => {
    const ctx = context(req, res);
    ctx.operation = operation;
    ctx.cleanups.push(() => access(ctx, res));
    if (closing) return sendError(res, serviceUnavailable('The gateway is shutting down; retry on another instance.', 1, 'shutting_down'));
    inFlight++;
    ctx.cleanups.push(() => {
      if (--inFlight === 0) for (const fn of drained.splice(0)) fn();
    });
    handler(req, res, () => routes.fallback(req, res, next));
  };

  const handler: Middleware = function teraGateway(req, res, next) {
    stamp(req, res, () => undefined);
    const ctx = context(req, res);
    ctx.log ??= logger.child({ requestId: ctx.id });
    try {
      const route = routeOf(routes, req.method, (req.url ?? '/').split('?', 1)[0]!);
      if (route) return admit(req, res, next, route);
      routes.fallback(req, res, next);
    } catch (err) {
      // Nothing thrown here may reach the host framework's error page (HTML, a stack, file paths).
      if (!res.headersSent) sendError(res, err);
      else res.destroy();
    }
  };

  return {
    handler,
    health: healthHandler(options, stages, upstream, () => closing),
    liveness: livenessHandler(() => closing),
    readiness: readinessHandler(stages, upstream, () => closing),
    metrics: metricsHandler(options, stages),
    upstream,
    ready: (timeoutMs) => upstream.ready(timeoutMs),
    async close() {
      if (closing) return;
      closing = true;
      const started = performance.now();
      logger.info({ inFlight, graceMs: options.shutdownGraceMs }, 'drain started');
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, options.shutdownGraceMs);
          timer.unref();
          drained.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      logger.info({ unfinished: inFlight, durationMs: Math.round(performance.now() - started) }, 'drain finished');
      stages.admission?.close();
      upstream.close();
    },
  };
}

/**
 * The gateway for Express (or any connect-style app): `app.use('/v1', createGateway(options))`.
 * Serves `/chat/completions`, `/responses`, `/models`, `/models/{id}`, and answers every other
 * path in the error shape. A plain handler, not an Express router: nothing here imports Express.
 */
export function createGateway(options: GatewayOptions): Gateway {
  const gateway = createGatewayHandler(options);
  const handler: Middleware = (req, res, next) => gateway.handler(req, res, next);
  return Object.assign(handler, {
    handler: gateway.handler,
    health: gateway.health,
    metrics: gateway.metrics,
    liveness: gateway.liveness,
    readiness: gateway.readiness,
    upstream: gateway.upstream,
    ready: gateway.ready,
    close: gateway.close,
  });
}
