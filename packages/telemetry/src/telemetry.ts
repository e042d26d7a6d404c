import { createRequire } from 'node:module';
import type { ServerResponse } from 'node:http';
import {
  SpanKind,
  SpanStatusCode,
  context as otelContext,
  isSpanContextValid,
  metrics,
  trace,
  type Attributes,
  type Context,
  type Meter,
  type MetricOptions,
  type Span,
} from '@opentelemetry/api';
import {
  GPT_OSS_20B,
  PRICE_PER_MILLION,
  consoleLogger,
  context,
  costUSD,
  keyIdOf,
  parseOptions,
  type ChatTransform,
  type Middleware,
  type RequestContext,
} from '@tera-gw/core';
import { telemetryOptionsSchema, type TelemetryOptions } from './options.js';
import './context.js';
import { ATTR, DURATION_BUCKETS, METRIC, OPERATION_CHAT, PER_TOKEN_BUCKETS, PROVIDER, TOKEN_BUCKETS, latestOnly } from './semconv.js';

/** One finished request, once, with its real token counts and their cost. */
export interface UsageRecord {
  requestId: string;
  keyId: string | undefined;
  model: string;
  /**
   * From the upstream's usage (streams ask for it on every chunk, so a stream the client left or
   * that broke is billed what the replica generated); a request aborted before the replica
   * reported anything is billed its prompt from the gateway's count. Null when no attempt ran.
   */
  promptTokens: number | null;
  completionTokens: number | null;
  totalTokens: number | null;
  reasoningTokens: number | null;
  cachedTokens: number | null;
  /** USD at $0.07 / $0.25 per million input / output tokens (reasoning is output). */
  costUSD: number | null;
  finishReason: string | undefined;
  status: number;
  aborted: boolean;
  /** Why an aborted request ended: `client_closed_before_first_token`, `client_closed_mid_stream`, `client_closed_before_answer`. */
  abortReason: string | undefined;
  attempts: number;
  replica: string | undefined;
  /** `fallback` when the overflow provider answered (the pool was full), else `pool`. */
  servedBy: 'pool' | 'fallback';
  /** Milliseconds waited in the admission queue; undefined without admission. */
  queueMs: number | undefined;
  stream: boolean;
  startedAt: Date;
  durationMs: number;
  timeToFirstByteMs: number | undefined;
}

export interface TelemetryStage extends Middleware {
  /** Replica health for the `tera.replica.ready` gauge (the gateway wires its adapter here). */
  readonly observeReplicas: (list: () => ReadonlyArray<{ url: string; state: string; breaker: string }>) => void;
  /** A breaker changed state: counted in `tera.breaker.transitions`. */
  readonly recordBreakerState: (replica: string, state: string) => void;
  /** A stream's replica failed after text: counted in `tera.resumes` (`tera_resumes_total{outcome}`). */
  readonly recordResume: (outcome: string) => void;
}

const epochMs = (performanceTime: number) => performance.timeOrigin + performanceTime;
// The instrumentation version is the package's own, read from its package.json (shipped in every tarball).
const VERSION = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

/** Collects the output text for `gen_ai.output.messages` when content recording is on. */
function contentRecorder(): ChatTransform & { text(): string } {
  let text = '';
  return {
    name: 'telemetry-content',
    marksChanges: true,
    completion(body) {
      text = body.choices[0]?.message.content ?? '';
      return body;
    },
    chunk(chunk) {
      const c = chunk.choices[0]?.delta.content;
      if (c) text += c;
      return [chunk];
    },
    text: () => text,
  };
}

/**
 * A counter summed here and handed to the SDK at collection (an observable counter): per request,
 * one Map update under a key the caller builds, instead of the SDK sorting and hashing an
 * attribute set on every add (measured: the Prometheus provider cost 50 to 100 CPU µs a request).
 */
class SummedCounter {
  private readonly sums = new Map<string, { attributes: Attributes; value: number }>();

  constructor(meter: Meter, name: string, options: MetricOptions, upDown = false) {
    const instrument = upDown ? meter.createObservableUpDownCounter(name, options) : meter.createObservableCounter(name, options);
    instrument.addCallback((result) => {
      for (const sum of this.sums.values()) result.observe(sum.value, sum.attributes);
    });
  }

  add(value: number, key: string, attributes: () => Attributes): void {
    const sum = this.sums.get(key);
    if (sum) sum.value += value;
    else this.sums.set(key, { attributes: attributes(), value });
  }
}

/** The operation as the gateway's route named it (`chat`, `responses`, ...); `chat` for a stage mounted alone. */
const operationOf = (ctx: RequestContext): string => ctx.operation ?? OPERATION_CHAT;

const MAX_MODEL_LABELS = 64;
const MAX_LABEL_CHARS = 64;

/**
 * Metrics carry the model the caller asked for, unknown ones included (a typo shows up as
 * itself); but names are the caller's to choose, so past 64 distinct ones any new name counts as
 * `other`: a tenant cannot grow the gateway's memory or a Prometheus server's series by inventing names.
 */
function boundedLabel(served: string): (name: string) => string {
  const seen = new Set<string>([served]);
  return (name) => {
    const label = name.length > MAX_LABEL_CHARS ? `${name.slice(0, MAX_LABEL_CHARS)}…` : name;
    if (seen.has(label)) return label;
    if (seen.size >= MAX_MODEL_LABELS) return 'other';
    seen.add(label);
    return label;
  };
}

/** Per key, for billing dashboards and Prometheus: these names (with `_total` for counters) are a documented contract. */
function createKeyInstruments(meter: Meter) {
  const keyTokens = new SummedCounter(meter, 'tera_usage_tokens', {
    description: 'Tokens per key by token_type: input, output (reasoning included), reasoning, cached',
  });
  const keyCost = new SummedCounter(meter, 'tera_usage_cost_usd', { description: 'Cost per key in USD at the model prices' });
  const budgetRemaining = { usd: new Map<string, number>(), tokens: new Map<string, number>() };
  meter
    .createObservableGauge('tera_budget_remaining_usd', { description: 'USD left in the current budget period of keys with a USD budget' })
    .addCallback((result) => {
      for (const [keyId, usd] of budgetRemaining.usd) result.observe(usd, { key_id: keyId });
    });
  meter
    .createObservableGauge('tera_budget_remaining_tokens', {
      description: 'Tokens left in the current budget period of keys with a token budget',
    })
    .addCallback((result) => {
      for (const [keyId, tokens] of budgetRemaining.tokens) result.observe(tokens, { key_id: keyId });
    });
  return { keyTokens, keyCost, budgetRemaining };
}

/** `tera.replica.ready`: 1 per replica that can take a request, read from the adapter when scraped. */
function createReplicaGauge(meter: Meter) {
  const replicas: { source?: () => ReadonlyArray<{ url: string; state: string; breaker: string }> } = {};
  const replicaReady = meter.createObservableGauge(METRIC.replicaReady, {
    description: '1 when the replica is warm, healthy and its breaker not open',
  });
  replicaReady.addCallback((result) => {
    for (const r of replicas.source?.() ?? [])
      result.observe(r.state === 'ready' && r.breaker !== 'open' ? 1 : 0, { [ATTR.replica]: r.url });
  });

  return replicas;
}

/** The GenAI conventions' instruments and the gateway's own, on one meter. */
function createInstruments(meter: Meter, model: string, legacyNames: boolean) {
  const tokenUsage = meter.createHistogram(METRIC.tokenUsage, {
    unit: '{token}',
    description: 'Tokens used per request, by gen_ai.token.type',
    advice: { explicitBucketBoundaries: TOKEN_BUCKETS },
  });
  const duration = meter.createHistogram(METRIC.operationDuration, {
    unit: 's',
    description: 'Duration of chat requests',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  const ttft = meter.createHistogram(METRIC.timeToFirstToken, {
    unit: 's',
    description: 'Time to the first byte of the answer',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  const perToken = meter.createHistogram(METRIC.timePerOutputToken, {
    unit: 's',
    description: 'Time per output token after the first',
    advice: { explicitBucketBoundaries: PER_TOKEN_BUCKETS },
  });
  const queueTime = meter.createHistogram(METRIC.queueDuration, {
    unit: 's',
    description: 'Time requests waited in the admission queue while the pool was full (0 when they went straight through)',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  const requests = new SummedCounter(meter, METRIC.requests, { unit: '{request}', description: 'Chat requests by status and error type' });
  const inFlight = new SummedCounter(meter, METRIC.inFlight, { unit: '{request}', description: 'Chat requests in flight' }, true);
  const inFlightAttributes = (operation: string): Attributes => ({
    [ATTR.operationName]: operation,
    [ATTR.providerName]: PROVIDER,
    [ATTR.requestModel]: model,
    ...(legacyNames ? { [ATTR.system]: PROVIDER } : {}),
  });
  const breakerTransitions = meter.createCounter(METRIC.breakerTransitions, {
    unit: '{transition}',
    description: 'Circuit breaker state changes',
  });
  const resumes = meter.createCounter('tera.resumes', {
    unit: '{resume}',
    description: 'Streams whose replica failed after text, by outcome: started, completed, no_replica, limit',
  });
  const repairs = meter.createCounter(METRIC.repairs, { unit: '{repair}', description: 'Repairs the response stages made, by kind' });
  const { keyTokens, keyCost, budgetRemaining } = createKeyInstruments(meter);
  const replicas = createReplicaGauge(meter);

  return {
    tokenUsage,
    duration,
    ttft,
    perToken,
    queueTime,
    requests,
    inFlight,
    inFlightAttributes,
    breakerTransitions,
    resumes,
    repairs,
    keyTokens,
    keyCost,
    budgetRemaining,
    replicas,
  };
}

/**
 * One span per chat request, `chat openai/gpt-oss-20b`, child of the app's active span, with
 * the GenAI conventions' attributes and a CLIENT child span per upstream attempt; the
 * conventions' metrics; and a usage record with cost. Depends on @opentelemetry/api only.
 */
export function telemetry(input: TelemetryOptions = {}): TelemetryStage {
  const options = parseOptions(telemetryOptionsSchema, input, 'telemetry()');
  const logger = options.logger ?? consoleLogger();
  const tracer = options.tracer ?? trace.getTracer('@tera-gw/telemetry', VERSION);
  const meter = options.meter ?? metrics.getMeter('@tera-gw/telemetry', VERSION);
  const model = options.model ?? GPT_OSS_20B;
  const prices = options.prices ?? PRICE_PER_MILLION;
  const legacyNames = !latestOnly();
  const instruments = createInstruments(meter, model, legacyNames);
  const modelLabel = boundedLabel(model);

  /** What every step of a request's end reads, computed once. */
  interface Ending {
    ctx: RequestContext;
    end: number;
    status: number;
    aborted: boolean;
    requestModel: string;
    operation: string;
    failure: string | undefined;
    metricAttrs: Attributes;
  }

  /** The request ended (answered, failed or the client left): span, attempt spans, metrics, usage record, in that order. */
  function finish(
    ctx: RequestContext,
    res: ServerResponse,
    span: Span,
    parent: Context,
    recorder: ReturnType<typeof contentRecorder> | undefined,
  ): void {
    const status = res.statusCode;
    const requestModel = modelLabel(ctx.requestedModel ?? ctx.body?.model ?? model);
    const operation = operationOf(ctx);
    const metricAttrs: Attributes = {
      [ATTR.operationName]: operation,
      [ATTR.providerName]: PROVIDER,
      [ATTR.requestModel]: requestModel,
    };
    if (legacyNames) metricAttrs[ATTR.system] = PROVIDER;
    const ending: Ending = {
      ctx,
      end: performance.now(),
      status,
      aborted: ctx.signal.aborted,
      requestModel,
      operation,
      failure: ctx.upstream?.error?.type ?? (status >= 400 ? (ctx.errorType ?? 'server_error') : undefined),
      metricAttrs,
    };
    if (span.isRecording()) {
      span.setAttributes(spanAttributes(ending, recorder));
      if (requestModel !== model) span.updateName(`${operation} ${requestModel}`);
      for (const event of ctx.events ?? []) span.addEvent(event.name, event.attributes, epochMs(event.time));
      if (ctx.repairs)
        for (const [kind, count] of Object.entries(ctx.repairs))
          span.addEvent('tera.repair', { 'tera.repair.kind': kind, 'tera.repair.count': count });
      recordAttemptSpans(ending, trace.setSpan(parent, span));
      if (ending.failure && !ending.aborted) span.setStatus({ code: SpanStatusCode.ERROR, message: ending.failure });
    }
    span.end(epochMs(ending.end));
    recordMetrics(ending);
    emitUsageRecord(ending);
  }

  /** The request span's GenAI attributes: request settings, response, usage, tool calls, outcome. */
  function spanAttributes(ending: Ending, recorder: ReturnType<typeof contentRecorder> | undefined): Attributes {
    const { ctx, status, metricAttrs, requestModel, failure, aborted } = ending;
    const body = ctx.body;
    const upstream = ctx.upstream;
    const usage = ctx.usage;
    const a: Attributes = { ...metricAttrs, [ATTR.requestId]: ctx.id, [ATTR.httpStatus]: status };
    if (ctx.key) a[ATTR.keyId] = ctx.key.id;
    if (body) {
      const maxTokens = body.max_completion_tokens ?? body.max_tokens;
      if (maxTokens != null) a[ATTR.requestMaxTokens] = maxTokens;
      if (body.temperature != null) a[ATTR.requestTemperature] = body.temperature;
      if (body.top_p != null) a[ATTR.requestTopP] = body.top_p;
      if (body.top_k != null) a[ATTR.requestTopK] = body.top_k;
      if (body.seed != null) a[ATTR.requestSeed] = body.seed;
      if (body.frequency_penalty != null) a[ATTR.requestFrequencyPenalty] = body.frequency_penalty;
      if (body.presence_penalty != null) a[ATTR.requestPresencePenalty] = body.presence_penalty;
      if (body.stop != null) a[ATTR.requestStopSequences] = typeof body.stop === 'string' ? [body.stop] : body.stop;
      a[ATTR.requestChoiceCount] = 1;
      a[ATTR.outputType] = body.response_format && body.response_format.type !== 'text' ? 'json' : 'text';
      a[ATTR.stream] = body.stream === true;
      if (options.recordContent) a[ATTR.inputMessages] = JSON.stringify(body.messages);
    }
    if (ctx.pool?.queueMs !== undefined) a[ATTR.queueMs] = Math.round(ctx.pool.queueMs);
    if (ctx.upstream?.servedBy) a[ATTR.servedBy] = ctx.upstream.servedBy;
    if (upstream) {
      a[ATTR.attempts] = upstream.attempts;
      if (upstream.resumes) a['tera.resumed'] = upstream.resumes;
      if (upstream.replica) a[ATTR.replica] = upstream.replica;
      if (upstream.responseId) a[ATTR.responseId] = upstream.responseId;
      if (upstream.finishReason) a[ATTR.responseFinishReasons] = [upstream.finishReason];
      a[ATTR.responseModel] = requestModel;
    }
    if (usage) {
      a[ATTR.usageInputTokens] = usage.prompt_tokens;
      a[ATTR.usageOutputTokens] = usage.completion_tokens;
      const reasoning = usage.completion_tokens_details?.reasoning_tokens;
      if (reasoning != null) a[ATTR.reasoningTokens] = reasoning;
      const cached = usage.prompt_tokens_details?.cached_tokens;
      if (cached != null) a[ATTR.cachedTokens] = cached;
      a[ATTR.costUSD] = costUSD(usage, prices);
    }
    if (ctx.toolCalls?.length) {
      a[ATTR.toolCalls] = ctx.toolCalls.length;
      a[ATTR.toolCallsInvalid] = ctx.toolCalls.filter((c) => !c.valid).length;
      a[ATTR.toolNames] = ctx.toolCalls.map((c) => c.name);
    }
    if (aborted) a[ATTR.clientAborted] = true;
    if (recorder) a[ATTR.outputMessages] = JSON.stringify([{ role: 'assistant', content: recorder.text() }]);
    if (failure) a[ATTR.errorType] = failure;
    return a;
  }

  /** One CLIENT span per upstream attempt, under the request span. */
  function recordAttemptSpans(ending: Ending, parentCtx: Context): void {
    const { ctx, requestModel, end, operation } = ending;
    for (const [i, attempt] of (ctx.upstream?.attemptLog ?? []).entries()) {
      const url = new URL(attempt.replica);
      const child = tracer.startSpan(
        `${operation} ${requestModel}`,
        {
          kind: SpanKind.CLIENT,
          startTime: epochMs(attempt.start),
          attributes: {
            [ATTR.operationName]: operation,
            [ATTR.providerName]: PROVIDER,
            [ATTR.requestModel]: requestModel,
            [ATTR.serverAddress]: url.hostname,
            [ATTR.serverPort]: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
            [ATTR.attempt]: i + 1,
            ...(attempt.status !== undefined ? { [ATTR.httpStatus]: attempt.status } : {}),
          },
        },
        parentCtx,
      );
      if (attempt.outcome === 'retried' || attempt.outcome === 'failed') {
        child.setAttribute(ATTR.errorType, attempt.status !== undefined ? String(attempt.status) : 'upstream_fault');
        child.setStatus({ code: SpanStatusCode.ERROR, message: attempt.error ?? attempt.outcome });
      }
      child.end(epochMs(attempt.end ?? end));
    }
  }

  function recordMetrics(ending: Ending): void {
    const { ctx, end, failure, metricAttrs, status, aborted } = ending;
    const usage = ctx.usage;
    const upstream = ctx.upstream;
    const seconds = (end - ctx.startTime) / 1000;
    const outcomeAttrs: Attributes = failure ? { ...metricAttrs, [ATTR.errorType]: failure } : metricAttrs;
    instruments.duration.record(seconds, outcomeAttrs);
    if (ctx.pool?.queueMs !== undefined)
      instruments.queueTime.record(ctx.pool.queueMs / 1000, { 'tera.served_by': ctx.upstream?.servedBy ?? 'pool' });
    // `key_id` and `status` make it Prometheus's `tera_requests_total{key_id, status}` (a documented contract).
    const keyId = keyIdOf(ctx);
    instruments.requests.add(
      1,
      `${ending.requestModel}\u0000${failure ?? ''}\u0000${status}\u0000${keyId}\u0000${aborted ? 1 : 0}`,
      () => ({
        ...outcomeAttrs,
        [ATTR.httpStatus]: status,
        key_id: keyId,
        status: String(status),
        ...(aborted ? { [ATTR.clientAborted]: true } : {}),
      }),
    );
    instruments.inFlight.add(-1, ending.operation, () => instruments.inFlightAttributes(ending.operation));
    if (usage) {
      instruments.tokenUsage.record(usage.prompt_tokens, { ...metricAttrs, [ATTR.tokenType]: 'input' });
      instruments.tokenUsage.record(usage.completion_tokens, { ...metricAttrs, [ATTR.tokenType]: 'output' });
    }
    const firstByte = upstream?.firstByteMs;
    if (firstByte !== undefined && !failure) {
      instruments.ttft.record(firstByte / 1000, metricAttrs);
      if (usage && usage.completion_tokens > 1 && ctx.body?.stream)
        instruments.perToken.record((seconds - firstByte / 1000) / (usage.completion_tokens - 1), metricAttrs);
    }
    if (ctx.repairs) for (const [kind, count] of Object.entries(ctx.repairs)) instruments.repairs.add(count, { 'tera.repair.kind': kind });
    recordKeyMetrics(ctx);
  }

  function recordKeyMetrics(ctx: RequestContext): void {
    const keyId = keyIdOf(ctx);
    const usage = ctx.usage;
    const cost = usage ? costUSD(usage, prices) : 0;
    if (usage) {
      const tokens = (type: string, n: number) =>
        instruments.keyTokens.add(n, `${keyId}\u0000${type}`, () => ({ key_id: keyId, token_type: type }));
      tokens('input', usage.prompt_tokens);
      tokens('output', usage.completion_tokens);
      const reasoning = usage.completion_tokens_details?.reasoning_tokens;
      if (reasoning) tokens('reasoning', reasoning);
      const cached = usage.prompt_tokens_details?.cached_tokens;
      if (cached) tokens('cached', cached);
      instruments.keyCost.add(cost, keyId, () => ({ key_id: keyId }));
    }
    const remaining = ctx.budgetRemaining;
    if (remaining?.usd !== undefined) instruments.budgetRemaining.usd.set(keyId, Math.max(0, remaining.usd - cost));
    if (remaining?.tokens !== undefined)
      instruments.budgetRemaining.tokens.set(keyId, Math.max(0, remaining.tokens - (usage ? usage.total_tokens : 0)));
  }

  /** Once per request that reached an upstream; a throwing hook is logged, never allowed to break the request's end. */
  function emitUsageRecord(ending: Ending): void {
    const { ctx, end, status, aborted, requestModel } = ending;
    const upstream = ctx.upstream;
    const usage = ctx.usage;
    if (!options.onUsage || !upstream || upstream.attempts === 0) return;
    try {
      options.onUsage({
        requestId: ctx.id,
        keyId: ctx.key?.id,
        model: requestModel,
        promptTokens: usage?.prompt_tokens ?? null,
        completionTokens: usage?.completion_tokens ?? null,
        totalTokens: usage?.total_tokens ?? null,
        reasoningTokens: usage?.completion_tokens_details?.reasoning_tokens ?? null,
        cachedTokens: usage?.prompt_tokens_details?.cached_tokens ?? null,
        costUSD: usage ? costUSD(usage, prices) : null,
        finishReason: upstream.finishReason,
        status,
        aborted,
        abortReason: aborted ? (ctx.abortReason ?? 'client_closed') : undefined,
        attempts: upstream.attempts,
        replica: upstream.replica,
        servedBy: upstream.servedBy ?? 'pool',
        queueMs: ctx.pool?.queueMs,
        stream: ctx.body?.stream === true,
        startedAt: new Date(epochMs(ctx.startTime)),
        durationMs: end - ctx.startTime,
        timeToFirstByteMs: upstream.firstByteMs,
      });
    } catch (err) {
      (ctx.log ?? logger).error({ err, requestId: ctx.id }, 'telemetry: onUsage threw');
    }
  }

  const stage: Middleware = function telemetryStage(req, res, next) {
    const ctx = context(req, res);
    const parent = otelContext.active();
    const operation = operationOf(ctx);
    const attributes: Attributes = { [ATTR.operationName]: operation, [ATTR.providerName]: PROVIDER, [ATTR.requestModel]: model };
    const span = tracer.startSpan(`${operation} ${model}`, { kind: SpanKind.INTERNAL, attributes }, parent);
    ctx.span = span;
    // The upstream continues the gateway's trace, not whatever the caller sent.
    const spanContext = span.spanContext();
    if (span.isRecording() && isSpanContextValid(spanContext)) {
      const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, '0');
      const traceparent = `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
      const tracestate = spanContext.traceState?.serialize();
      ctx.traceHeaders = tracestate ? { traceparent, tracestate } : { traceparent };
    }
    instruments.inFlight.add(1, operation, () => instruments.inFlightAttributes(operation));
    const recorder = options.recordContent && span.isRecording() ? contentRecorder() : undefined;
    if (recorder) ctx.responseTransforms.push(recorder);
    ctx.cleanups.push(() => finish(ctx, res, span, parent, recorder));
    otelContext.with(trace.setSpan(parent, span), next);
  };

  return Object.assign(stage, {
    observeReplicas: (list: () => ReadonlyArray<{ url: string; state: string; breaker: string }>) => {
      instruments.replicas.source = list;
    },
    recordBreakerState: (replica: string, state: string) =>
      instruments.breakerTransitions.add(1, { [ATTR.replica]: replica, [ATTR.breakerState]: state }),
    recordResume: (outcome: string) => instruments.resumes.add(1, { outcome }),
  });
}
