import type { IncomingMessage, ServerResponse } from 'node:http';
import { admission } from '@tera-gw/admission';
import { auth, MemoryKeyStore, scope, verifyBearer, type KeyStore } from '@tera-gw/auth';
import {
  compose,
  context,
  fallbackHandler,
  modelsHandler,
  requestId,
  sendJSON,
  serviceUnavailable,
  sendError,
  permissionError,
  TeraError,
  validate,
  DEFAULT_ROUTES,
  GPT_OSS_20B,
  GPT_OSS_20B_INFO,
  type Middleware,
  type RequestContext,
} from '@tera-gw/core';
import { budgets, MemoryStore, rateLimit } from '@tera-gw/rate-limit';
import { harmony } from '@tera-gw/harmony';
import { reasoning } from '@tera-gw/reasoning';
import { responses } from '@tera-gw/responses';
import { telemetry } from '@tera-gw/telemetry';
import { toolCalls } from '@tera-gw/tool-calls';
import { vllm, type VllmAdapter, type VllmOptions } from '@tera-gw/vllm';
import { parseGatewayOptions, type GatewayOptions } from './options.js';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { passthrough } from './passthrough.js';

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
  const stages = options.stages ?? {};
  const upstreamOptions: VllmOptions = { replicas: options.replicas, ...options.upstream };
  const upstream = vllm(upstreamOptions);

  let authStage: Middleware | undefined;
  let keyStore: KeyStore | undefined;
  if (stages.auth !== undefined) authStage = stages.auth === false ? undefined : stages.auth;
  else if (options.auth !== false) {
    keyStore = options.auth.keyStore ?? (options.auth.keys ? new MemoryKeyStore(options.auth.keys) : undefined);
    if (!keyStore)
      throw new TypeError("createGateway(): option 'auth' needs `keys` or `keyStore` (or `auth: false` with your own auth in front)");
    authStage = auth({ keyStore });
  }
  const pick = (name: keyof NonNullable<typeof options.stages>, fallback: Middleware | undefined): Middleware | undefined =>
    stages[name] === undefined ? fallback : stages[name] === false ? undefined : stages[name];

  // Prometheus reads the gateway's own meter provider, unless the app hands telemetry a meter of its own.
  let prometheus: PrometheusExporter | undefined;
  let meter = options.telemetry ? options.telemetry.meter : undefined;
  if (options.telemetry !== false && !meter && options.prometheus !== false) {
    prometheus = new PrometheusExporter({ preventServerStart: true });
    meter = new MeterProvider({ readers: [prometheus] }).getMeter('@tera-gw/gateway');
  }
  let telemetryStage: Middleware | undefined;
  if (options.telemetry !== false || options.onUsage) {
    const t = telemetry({
      ...(options.telemetry || {}),
      ...(meter ? { meter } : {}),
      ...(options.prices ? { prices: options.prices } : {}),
      ...(options.onUsage ? { onUsage: options.onUsage } : {}),
    });
    t.observeReplicas(upstream.replicas);
    upstream.events.on('breaker', (replica, state) => t.recordBreakerState(replica, state));
    telemetryStage = t;
  }

  // Other model names this model answers to: code that names another model moves over without a change.
  const aliasList = Object.entries(options.models?.aliases ?? {}).map(([alias, target]) => {
    const entry = typeof target === 'string' ? { model: target, hidden: false } : { model: target.model, hidden: target.hidden === true };
    if (entry.model !== GPT_OSS_20B)
      throw new TypeError(`createGateway(): alias '${alias}' names '${entry.model}', but this gateway serves only '${GPT_OSS_20B}'`);
    if (alias === GPT_OSS_20B) throw new TypeError(`createGateway(): '${alias}' cannot be an alias of itself`);
    return { alias, ...entry };
  });
  const aliases: Record<string, string> = Object.fromEntries(aliasList.map((a) => [a.alias, a.model]));
  const limiterStore = (options.rateLimit ? options.rateLimit.store : undefined) ?? new MemoryStore();
  if (options.admission && options.admission.overflow && !options.upstream?.fallback)
    throw new TypeError("createGateway(): option 'admission.overflow' needs a provider to overflow to: set 'upstream.fallback'");
  const admissionStage =
    options.admission === false
      ? undefined
      : admission({
          ...(options.upstream?.fallback ? { overflow: { afterMs: 5000 } } : {}),
          ...options.admission,
          ...(options.upstream?.retryAfterSeconds ? { retryAfterSeconds: options.upstream.retryAfterSeconds } : {}),
          pool: upstream.pool,
        });
  const budgetStage =
    options.budgets === false ? undefined : budgets({ ...options.budgets, ...(options.prices ? { prices: options.prices } : {}) });
  const responsesStage =
    options.responses === false
      ? undefined
      : responses({
          ...options.responses,
          validation: { ...options.validation, aliases },
        });
  const limiter = (cost?: (ctx: RequestContext) => number) =>
    options.rateLimit === false ? undefined : rateLimit({ ...options.rateLimit, store: limiterStore, ...(cost ? { cost } : {}) });
  const requestLimiter = limiter();
  const scopeStage = pick('scope', options.auth === false ? undefined : scope());
  const telemetryOn = pick('telemetry', telemetryStage);
  /** The checks whose cost grows with the request (schema limits, an exact prompt count), once the cheap guards passed. */
  const caps: Middleware = function costlyChecks(req, res, next) {
    const ctx = context(req, res);
    const checks = ctx.costlyChecks;
    if (!checks) return next();
    ctx.costlyChecks = undefined;
    checks().then(() => next(), next);
  };
  /**
   * Every route that costs a replica or the gateway real work runs the same guards in the same
   * order (ARCHITECTURE.md): telemetry, auth, the route's own reading of the request, scope,
   * limiter, budget, admission, caps; then what serves it. A guard with nothing to do for a route
   * passes (a budget only holds what the request can cost).
   */
  const guarded = (
    read: Middleware,
    serve: ReadonlyArray<Middleware | undefined>,
    guards: { limiter?: Middleware | undefined; replica?: boolean } = {},
  ) =>
    compose(
      [
        telemetryOn,
        authStage,
        read,
        scopeStage,
        'limiter' in guards ? guards.limiter : requestLimiter,
        guards.replica === false ? undefined : budgetStage,
        guards.replica === false ? undefined : admissionStage,
        caps,
        ...serve,
      ].filter((s): s is Middleware => s !== undefined),
    );
  /** Response stages, then the upstream: what serves chat and the Responses API. */
  const chatServing = [
    pick('harmony', options.harmony === false ? undefined : harmony()),
    options.reasoning === false ? undefined : reasoning(options.reasoning ?? {}),
    options.toolCalls === false ? undefined : toolCalls(options.toolCalls ?? {}),
    upstream,
  ];
  const chat = guarded(validate({ ...options.validation, aliases, deferCostlyChecks: true }), chatServing);
  const raw = options.passthrough?.length
    ? passthrough({
        paths: options.passthrough,
        upstream,
        model: GPT_OSS_20B,
        aliases,
        maxBodyBytes: options.validation?.maxBodyBytes,
        retryAfterSeconds: options.upstream?.retryAfterSeconds,
        maxAttempts: options.upstream?.maxAttempts,
        forwardTraceparent: (options.upstream?.forwardHeaders ?? ['traceparent']).includes('traceparent'),
      })
    : undefined;
  // Pass-through requests take the same guards as chat: one concurrency limit per key, budgets, admission, the output cap.
  const passthroughStages = raw ? guarded(raw.read, [raw.proxy]) : undefined;
  const responsesCreate = responsesStage ? guarded(responsesStage.create, chatServing) : undefined;
  // Counting tokens is the gateway's own work, weighed by what it reads (no output, no replica).
  const inputTokens = responsesStage
    ? guarded(responsesStage.inputTokens.read, [responsesStage.inputTokens.count], {
        limiter: limiter((ctx) => Math.ceil((ctx.promptTokenEstimate ?? 0) / 4)),
        replica: false,
      })
    : undefined;
  // Reads of stored responses weigh one token at admission and what they return once answered.
  const readLimiter = limiter(() => 1);
  const storedRoutes = responsesStage
    ? compose([authStage, readLimiter, responsesStage.stored].filter((s): s is Middleware => s !== undefined))
    : undefined;
  const models = modelsHandler([
    GPT_OSS_20B_INFO,
    ...aliasList.filter((a) => !a.hidden).map((a) => ({ ...GPT_OSS_20B_INFO, id: a.alias })),
  ]);
  const routes: Record<string, readonly string[]> = { ...DEFAULT_ROUTES };
  if (responsesStage) Object.assign(routes, { '/responses': ['POST'], '/responses/input_tokens': ['POST'] });
  for (const path of raw?.served.keys() ?? []) routes[path] = ['POST'];
  const fallback = fallbackHandler(routes);
  const stamp = requestId();

  const admit = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void, stages: Middleware) => {
    if (closing) return sendError(res, serviceUnavailable('The gateway is shutting down; retry on another instance.', 1, 'shutting_down'));
    inFlight++;
    context(req, res).cleanups.push(() => {
      if (--inFlight === 0) for (const fn of drained.splice(0)) fn();
    });
    stages(req, res, () => fallback(req, res, next));
  };

  let closing = false;
  let inFlight = 0;
  const drained: Array<() => void> = [];

  const handler: Middleware = function teraGateway(req, res, next) {
    stamp(req, res, () => undefined);
    try {
      route(req, res, next);
    } catch (err) {
      // Nothing thrown here may reach the host framework's error page (HTML, a stack, file paths).
      if (!res.headersSent) sendError(res, err);
      else res.destroy();
    }
  };

  const route: Middleware = (req, res, next) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    if (req.method === 'POST' && path === '/chat/completions') return admit(req, res, next, chat);
    if (responsesCreate && req.method === 'POST' && (path === '/responses' || path === '/responses/'))
      return admit(req, res, next, responsesCreate);
    if (inputTokens && req.method === 'POST' && path === '/responses/input_tokens') return admit(req, res, next, inputTokens);
    if (storedRoutes && path.startsWith('/responses/') && path !== '/responses/input_tokens') return admit(req, res, next, storedRoutes);
    if (passthroughStages && req.method === 'POST' && raw!.served.has(path)) return admit(req, res, next, passthroughStages);
    models(req, res, () => fallback(req, res, next));
  };

  const healthDetails = options.health?.details ?? 'operator';
  const health: Middleware = (req: IncomingMessage, res: ServerResponse) => {
    const replicas = upstream.replicas();
    const ok = !closing && replicas.some((r) => r.state === 'ready' && r.breaker !== 'open');
    const code = ok ? 200 : 503;
    const status = ok ? 'ok' : closing ? 'shutting_down' : 'unavailable';
    const withDetails = () =>
      sendJSON(res, code, admissionStage ? { status, replicas, queue: admissionStage.status() } : { status, replicas });
    const statusOnly = () => sendJSON(res, code, { status });
    if (healthDetails === 'public') return withDetails();
    // Replica URLs and load describe the deployment and its traffic: operators only.
    if (healthDetails === 'none' || !keyStore || !req.headers.authorization) return statusOnly();
    verifyBearer(req, keyStore).then((record) => (record.operator ? withDetails() : statusOnly()), statusOnly);
  };

  const metricsAccess = (options.prometheus && options.prometheus.access) ?? 'operator';
  const metrics: Middleware = (req: IncomingMessage, res: ServerResponse) => {
    if (!prometheus)
      return sendError(
        res,
        new TeraError(404, 'invalid_request_error', 'Prometheus metrics are off for this gateway.', { code: 'metrics_off' }),
      );
    const scrape = () => prometheus.getMetricsRequestHandler(req, res);
    // Per-key usage and spend describe every tenant: operators only, unless the deployment says otherwise.
    if (metricsAccess === 'public' || (!keyStore && options.auth === false)) return scrape();
    if (!keyStore) return sendError(res, permissionError('Metrics need an operator key.'));
    verifyBearer(req, keyStore).then(
      (record) => (record.operator ? scrape() : sendError(res, permissionError('Metrics need an operator key.'))),
      (err: unknown) => sendError(res, err),
    );
  };

  return {
    handler,
    health,
    metrics,
    upstream,
    ready: (timeoutMs) => upstream.ready(timeoutMs),
    async close() {
      closing = true;
      const grace = options.shutdownGraceMs ?? 30_000;
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, grace);
          timer.unref();
          drained.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      admissionStage?.close();
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
    upstream: gateway.upstream,
    ready: gateway.ready,
    close: gateway.close,
  });
}
