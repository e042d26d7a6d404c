import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { admission, type AdmissionStage } from '@tera-gw/admission';
import { auth, MemoryKeyStore, scope, type KeyStore } from '@tera-gw/auth';
import { GPT_OSS_20B, type Logger, type Middleware, type RequestContext } from '@tera-gw/core';
import { harmony } from '@tera-gw/harmony';
import { budgets, MemoryStore, rateLimit } from '@tera-gw/rate-limit';
import { reasoning } from '@tera-gw/reasoning';
import { responses, type ResponsesStage } from '@tera-gw/responses';
import { telemetry } from '@tera-gw/telemetry';
import { toolCalls } from '@tera-gw/tool-calls';
import type { VllmAdapter } from '@tera-gw/vllm';
import type { ParsedGatewayOptions } from './options.js';

/** Every stage the gateway composes, built once from its options. */
export interface Stages {
  auth: Middleware | undefined;
  /** The keys behind the built-in auth (undefined with `auth: false` or a stage of the app's own). */
  keyStore: KeyStore | undefined;
  telemetry: Middleware | undefined;
  prometheus: PrometheusExporter | undefined;
  scope: Middleware | undefined;
  /** A limiter over the one store every route shares; `cost` weighs routes that are not a generation. */
  limiter: (cost?: (ctx: RequestContext) => number) => Middleware | undefined;
  budget: Middleware | undefined;
  admission: AdmissionStage | undefined;
  responses: ResponsesStage | undefined;
  /** Response stages, then the upstream: what serves chat and the Responses API. */
  chatServing: Array<Middleware | undefined>;
  /** The stores requests need that can be away (Redis): the readiness probe pings them. */
  stores: Array<{ name: string; ping: () => Promise<void> }>;
  /** Other names of the model, and whether `/models` lists them. */
  aliases: Array<{ alias: string; model: string; hidden: boolean }>;
}

type StageName = keyof NonNullable<ParsedGatewayOptions['stages']>;

/** The app's own stage for `name` when it gave one (`false`: none), else the built-in. */
function stageOf(options: ParsedGatewayOptions, name: StageName, builtIn: () => Middleware | undefined): Middleware | undefined {
  const given = options.stages?.[name];
  if (given === undefined) return builtIn();
  return given === false ? undefined : given;
}

function authStage(options: ParsedGatewayOptions): { stage: Middleware | undefined; keyStore: KeyStore | undefined } {
  let keyStore: KeyStore | undefined;
  const stage = stageOf(options, 'auth', () => {
    if (options.auth === false) return undefined;
    keyStore = options.auth.keyStore ?? new MemoryKeyStore(options.auth.keys ?? [], 'auth.keys');
    return auth({ keyStore });
  });
  return { stage, keyStore };
}

/** Telemetry, with Prometheus reading the gateway's own meter provider unless the app handed telemetry a meter. */
function telemetryStage(options: ParsedGatewayOptions, upstream: VllmAdapter, logger: Logger) {
  let prometheus: PrometheusExporter | undefined;
  let meter = options.telemetry ? options.telemetry.meter : undefined;
  if (options.telemetry !== false && !meter && options.prometheus !== false) {
    prometheus = new PrometheusExporter({ preventServerStart: true });
    // `service_name="tera-gw"` on target_info, not `unknown_service:node`; OTEL_SERVICE_NAME names it otherwise.
    const resource = defaultResource().merge(resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME || 'tera-gw' }));
    meter = new MeterProvider({ resource, readers: [prometheus] }).getMeter('@tera-gw/gateway');
  }
  if (options.telemetry === false && !options.onUsage) return { stage: undefined, prometheus };
  const t = telemetry({
    ...(options.telemetry || {}),
    ...(meter ? { meter } : {}),
    ...(options.prices ? { prices: options.prices } : {}),
    ...(options.onUsage ? { onUsage: options.onUsage } : {}),
    logger,
  });
  t.observeReplicas(upstream.replicas);
  upstream.events.on('breaker', (replica, state) => t.recordBreakerState(replica, state));
  upstream.events.on('resume', (_ctx, _replica, outcome) => t.recordResume(outcome));
  return { stage: stageOf(options, 'telemetry', () => t), prometheus };
}

/** Other model names this model answers to: code that names another model moves over without a change. */
function aliasesOf(options: ParsedGatewayOptions): Stages['aliases'] {
  return Object.entries(options.models?.aliases ?? {}).map(([alias, target]) => {
    const entry = typeof target === 'string' ? { model: target, hidden: false } : { model: target.model, hidden: target.hidden === true };
    if (entry.model !== GPT_OSS_20B)
      throw new TypeError(`createGateway(): alias '${alias}' names '${entry.model}', but this gateway serves only '${GPT_OSS_20B}'`);
    if (alias === GPT_OSS_20B) throw new TypeError(`createGateway(): '${alias}' cannot be an alias of itself`);
    return { alias, ...entry };
  });
}

function admissionStage(options: ParsedGatewayOptions, upstream: VllmAdapter): AdmissionStage | undefined {
  if (options.admission === false) return undefined;
  if (options.admission?.overflow && !options.upstream?.fallback)
    throw new TypeError("createGateway(): option 'admission.overflow' needs a provider to overflow to: set 'upstream.fallback'");
  return admission({
    ...(options.upstream?.fallback ? { overflow: { afterMs: 5000 } } : {}),
    ...options.admission,
    ...(options.upstream?.retryAfterSeconds ? { retryAfterSeconds: options.upstream.retryAfterSeconds } : {}),
    pool: upstream.pool,
  });
}

export function buildStages(options: ParsedGatewayOptions, upstream: VllmAdapter, logger: Logger): Stages {
  const { stage: authMiddleware, keyStore } = authStage(options);
  const { stage: telemetryMiddleware, prometheus } = telemetryStage(options, upstream, logger);
  const aliases = aliasesOf(options);
  const aliasMap: Record<string, string> = Object.fromEntries(aliases.map((a) => [a.alias, a.model]));
  const limiterStore = (options.rateLimit ? options.rateLimit.store : undefined) ?? new MemoryStore();
  const limiter = (cost?: (ctx: RequestContext) => number) => {
    if (options.rateLimit === false) return undefined;
    return stageOf(options, 'rateLimit', () => rateLimit({ ...options.rateLimit, store: limiterStore, logger, ...(cost ? { cost } : {}) }));
  };
  const responsesStage =
    options.responses === false ? undefined : responses({ ...options.responses, validation: { ...options.validation, aliases: aliasMap } });
  const budgetStore = options.budgets ? options.budgets.store : undefined;
  const stores: Stages['stores'] = [];
  const pingable = (name: string, store: object | undefined) => {
    if (store && 'ping' in store && typeof store.ping === 'function')
      stores.push({ name, ping: () => (store.ping as () => Promise<void>).call(store) });
  };
  if (options.rateLimit !== false) pingable('rateLimit', limiterStore);
  if (options.budgets !== false) pingable('budgets', budgetStore);
  pingable('responses', responsesStage?.store);
  return {
    auth: authMiddleware,
    keyStore,
    telemetry: telemetryMiddleware,
    prometheus,
    scope: stageOf(options, 'scope', () => (options.auth === false ? undefined : scope())),
    limiter,
    budget:
      options.budgets === false
        ? undefined
        : budgets({ ...options.budgets, ...(options.prices ? { prices: options.prices } : {}), logger }),
    admission: admissionStage(options, upstream),
    responses: responsesStage,
    chatServing: [
      stageOf(options, 'harmony', () => (options.harmony === false ? undefined : harmony())),
      options.reasoning === false ? undefined : reasoning(options.reasoning ?? {}),
      options.toolCalls === false ? undefined : toolCalls(options.toolCalls ?? {}),
      upstream,
    ],
    stores,
    aliases,
  };
}
