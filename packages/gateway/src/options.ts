import { z } from 'zod';
import type { KeyEntry, KeyStore } from '@tera-gw/auth';
import { formatParam, issueToError, type Middleware, type ValidateOptions } from '@tera-gw/core';
import type { AdmissionOptions } from '@tera-gw/admission';
import type { BudgetOptions, RateLimitOptions } from '@tera-gw/rate-limit';
import type { ReasoningOptions } from '@tera-gw/reasoning';
import type { ResponsesOptions } from '@tera-gw/responses';
import type { TelemetryOptions, UsageRecord } from '@tera-gw/telemetry';
import type { ToolCallsOptions } from '@tera-gw/tool-calls';
import type { VllmOptions } from '@tera-gw/vllm';

/**
 * `createGateway()`'s options, composed from each package's own option type (so `onUsage` gets a
 * `UsageRecord`, stores and routers their interfaces). The schema below checks them at start-up;
 * a compile-time check keeps the two naming the same options.
 */
export interface GatewayOptions {
  /** vLLM base URLs. */
  replicas: string[];
  /** The upstream adapter's options (`@tera-gw/vllm`). */
  upstream?: Omit<VllmOptions, 'replicas'>;
  /** Request validation. @defaultValue `{ unknownFields: 'reject', maxBodyBytes: 4 MiB }` */
  validation?: Pick<ValidateOptions, 'unknownFields' | 'maxBodyBytes'>;
  /** The reasoning normalizer (`@tera-gw/reasoning`), or `false`. */
  reasoning?: ReasoningOptions | false;
  /** Tool-call repair (`@tera-gw/tool-calls`), or `false`. */
  toolCalls?: ToolCallsOptions | false;
  /** API keys: a list (keys in clear or SHA-256) or a KeyStore of yours; `false` turns auth off (then put your own before the gateway). */
  auth: false | { keys?: KeyEntry[]; keyStore?: KeyStore };
  /** The limiter (`@tera-gw/rate-limit`), or `false`. */
  rateLimit?: Omit<RateLimitOptions, 'cost'> | false;
  /** Spend budgets of keys that have one (`@tera-gw/rate-limit`'s `budgets()`; memory store by default), or `false`. */
  budgets?: Omit<BudgetOptions, 'prices'> | false;
  /**
   * Queueing when the pool is full (`@tera-gw/admission`): per-flow queues by key (or the end user a
   * `fairnessFromHeader` key names) and priority, wait limits, overflow to `upstream.fallback`.
   * Holds nothing until a replica's capacity is known (`upstream.maxNumSeqs` or learned from `/metrics`).
   * `overflow.afterMs` defaults to 5000 when `upstream.fallback` is set. `false` turns it off.
   */
  admission?: Omit<AdmissionOptions, 'pool'> | false;
  /** OpenTelemetry spans and metrics through the global API (a no-op until the app installs an SDK), or `false`. */
  telemetry?: Omit<TelemetryOptions, 'onUsage' | 'model' | 'prices'> | false;
  /** Called once per finished request with tokens and cost. */
  onUsage?: (record: UsageRecord) => void;
  /** Repair gpt-oss Harmony leaks (on by default; free when nothing leaked). */
  harmony?: false;
  /** The Responses API at `/responses` (`@tera-gw/responses`, on by default), or `false`. */
  responses?: Omit<ResponsesOptions, 'validation'> | false;
  /** Replace or leave out a stage: a middleware of your own, or `false`. */
  stages?: { [stage in 'telemetry' | 'auth' | 'scope' | 'rateLimit' | 'harmony']?: Middleware | false };
  /** How long `close()` lets streams in flight finish. @defaultValue 30000 */
  shutdownGraceMs?: number;
  /**
   * vLLM endpoints offered raw (off by default), e.g. `['/tokenize', '/detokenize', '/v1/completions']`:
   * served under the mount without `/v1` (`/v1/tokenize` when mounted at `/v1`), behind auth, scope
   * and the concurrency limit, proxied to a ready replica with the upstream key, never the caller's.
   */
  passthrough?: string[];
  /**
   * `GET /health`. Without an operator key it answers the status only: replica URLs and load
   * tell a tenant the deployment's layout and traffic. `details: 'operator'` adds them for keys
   * marked `operator: true`, `'public'` for everyone (a health port only operators reach), `'none'` never.
   * @defaultValue `{ details: 'operator' }`
   */
  health?: { details?: 'operator' | 'public' | 'none' };
  /**
   * `gateway.metrics` serves the metrics in Prometheus text format from a meter provider of the
   * gateway's own (unless `telemetry.meter` is given). Per-key usage is for operator keys
   * (`access: 'operator'`) or anyone who reaches the path (`'public'`); `false` turns it off.
   * @defaultValue `{ access: 'operator' }`
   */
  prometheus?: { access?: 'operator' | 'public' } | false;
  /**
   * Other model names served by `openai/gpt-oss-20b`, e.g. `{ aliases: { 'gpt-4o-mini': 'openai/gpt-oss-20b' } }`:
   * the answer and usage name what was asked, key scopes may list the alias or the model, and
   * `/v1/models` lists each alias unless it is `{ model, hidden: true }`.
   */
  models?: { aliases?: Record<string, string | { model: string; hidden?: boolean }> };
  /**
   * USD per million input / output tokens (reasoning is output): the cost in usage records,
   * spans and Prometheus, and what budgets spend. @defaultValue `{ input: 0.07, output: 0.25 }`
   */
  prices?: { input: number; output: number };
}

const middleware = z.custom<(...args: unknown[]) => void>((v) => typeof v === 'function', 'must be a middleware function (req, res, next)');
const stage = z.union([middleware, z.literal(false)]).optional();

/** The options object, validated once at start-up: a wrong option fails fast and names itself. */
export const gatewayOptionsSchema = z.strictObject({
  replicas: z.array(z.url({ protocol: /^https?$/ })).min(1, 'give at least one vLLM base URL'),
  upstream: z
    .strictObject({
      apiKey: z.string().optional(),
      maxNumSeqs: z.union([z.int().positive(), z.record(z.string(), z.int().positive())]).optional(),
      fallback: z
        .strictObject({
          url: z.url({ protocol: /^https?$/ }),
          apiKey: z.string().optional(),
          model: z.string().min(1).optional(),
        })
        .optional(),
      maxAttempts: z.int().min(1).max(10).optional(),
      timeouts: z
        .strictObject({
          connectMs: z.int().positive().optional(),
          firstByteMs: z.int().positive().optional(),
          idleMs: z.int().positive().optional(),
          totalMs: z.int().positive().optional(),
        })
        .optional(),
      health: z
        .union([
          z.literal(false),
          z.strictObject({
            intervalMs: z.int().positive().optional(),
            timeoutMs: z.int().positive().optional(),
            unhealthyThreshold: z.int().positive().optional(),
            warmUp: z.boolean().optional(),
            warmUpTimeoutMs: z.int().positive().optional(),
            metricsIntervalMs: z.int().min(0).optional(),
          }),
        ])
        .optional(),
      breaker: z
        .strictObject({
          consecutiveFailures: z.int().positive().optional(),
          errorThresholdPercentage: z.number().min(1).max(100).optional(),
          volumeThreshold: z.int().min(0).optional(),
          rollingWindowMs: z.int().positive().optional(),
          resetTimeoutMs: z.int().positive().optional(),
        })
        .optional(),
      forwardHeaders: z.array(z.string()).optional(),
      cacheIsolation: z.enum(['key', 'team', 'none']).optional(),
      outputChecks: z.strictObject({ emptyCompletions: z.boolean().optional(), structuredOutput: z.boolean().optional() }).optional(),
      cacheSaltSecret: z.string().min(16, 'needs at least 16 characters').optional(),
      routing: z.enum(['cache-aware', 'least-request']).optional(),
      retryAfterSeconds: z.int().positive().optional(),
      router: z
        .custom<object>(
          (v) => typeof v === 'object' && v !== null && typeof (v as { pick?: unknown }).pick === 'function',
          'must have a pick() method',
        )
        .optional(),
    })
    .optional(),
  validation: z
    .strictObject({
      unknownFields: z.enum(['reject', 'drop']).optional(),
      maxBodyBytes: z.int().positive().optional(),
    })
    .optional(),
  reasoning: z
    .union([
      z.literal(false),
      z.strictObject({
        output: z.enum(['reasoning', 'reasoning_content', 'both', 'none']).optional(),
        upstreamField: z.enum(['reasoning', 'reasoning_content', 'drop']).optional(),
      }),
    ])
    .optional(),
  toolCalls: z
    .union([
      z.literal(false),
      z.strictObject({ onInvalid: z.enum(['pass', 'error']).optional(), mode: z.enum(['incremental', 'buffered']).optional() }),
    ])
    .optional(),
  /** API keys: a list (keys in clear or SHA-256) or a KeyStore of yours; `false` turns auth off (then put your own before the gateway). */
  auth: z.union([
    z.literal(false),
    z.strictObject({
      keys: z
        .array(
          z.strictObject({
            key: z.string().min(8).optional(),
            sha256: z
              .string()
              .regex(/^[0-9a-f]{64}$/i)
              .optional(),
            id: z.string().optional(),
            models: z.union([z.array(z.string()), z.literal('*')]).optional(),
            concurrency: z.int().positive().optional(),
            tokensPerSecond: z.number().positive().optional(),
            expiresAt: z.union([z.string(), z.number(), z.date()]).optional(),
            disabled: z.boolean().optional(),
            team: z.string().min(1).optional(),
            operator: z.boolean().optional(),
            priority: z.int().min(-1000).max(1000).optional(),
            fairnessFromHeader: z.boolean().optional(),
            budget: z
              .strictObject({
                usd: z.number().positive().optional(),
                tokens: z.number().positive().optional(),
                period: z.enum(['day', 'week', 'month', 'total']),
              })
              .refine((b) => b.usd !== undefined || b.tokens !== undefined, 'a budget needs `usd` and/or `tokens`')
              .optional(),
          }),
        )
        .optional(),
      keyStore: z
        .custom<object>(
          (v) => typeof v === 'object' && v !== null && typeof (v as { lookup?: unknown }).lookup === 'function',
          'must have a lookup() method',
        )
        .optional(),
    }),
  ]),
  budgets: z
    .union([
      z.literal(false),
      z.strictObject({
        store: z
          .custom<object>(
            (v) => typeof v === 'object' && v !== null && typeof (v as { reserve?: unknown }).reserve === 'function',
            'must implement the BudgetStore interface',
          )
          .optional(),
        outputReservation: z.int().positive().optional(),
        holdTtlMs: z.int().positive().optional(),
        onStoreError: z.enum(['open', 'closed']).optional(),
        log: z.custom<(m: string) => void>((v) => typeof v === 'function').optional(),
        now: z.custom<() => number>((v) => typeof v === 'function').optional(),
      }),
    ])
    .optional(),
  rateLimit: z
    .union([
      z.literal(false),
      z.strictObject({
        store: z
          .custom<object>(
            (v) => typeof v === 'object' && v !== null && typeof (v as { acquire?: unknown }).acquire === 'function',
            'must implement the Store interface',
          )
          .optional(),
        defaults: z
          .strictObject({ concurrency: z.int().positive().optional(), tokensPerSecond: z.number().positive().optional() })
          .optional(),
        burstSeconds: z.number().positive().optional(),
        outputReservation: z.int().positive().optional(),
        leaseTtlMs: z.int().positive().optional(),
        onStoreError: z.enum(['open', 'closed']).optional(),
        log: z.custom<(message: string) => void>((v) => typeof v === 'function', 'must be a function').optional(),
      }),
    ])
    .optional(),
  admission: z
    .union([
      z.literal(false),
      z.strictObject({
        maxWaitMs: z
          .union([z.int().min(0), z.record(z.string().regex(/^(-?\d+|default)$/, 'a priority or "default"'), z.int().min(0))])
          .optional(),
        limits: z
          .strictObject({
            maxQueued: z.int().positive().optional(),
            maxQueuedBytes: z.int().positive().optional(),
            maxQueuedPerFlow: z.int().positive().optional(),
            maxQueuedBytesPerFlow: z.int().positive().optional(),
          })
          .optional(),
        fairness: z.enum(['requests', 'tokens']).optional(),
        fairnessHeader: z
          .string()
          .regex(/^[A-Za-z0-9-]+$/)
          .optional(),
        retryAfterSeconds: z.int().positive().optional(),
        overflow: z.strictObject({ afterMs: z.int().min(0) }).optional(),
        outputEstimate: z.int().positive().optional(),
      }),
    ])
    .optional(),
  /** OpenTelemetry spans and metrics through the global API (a no-op until the app installs an SDK), or `false`. */
  telemetry: z
    .union([
      z.literal(false),
      z.strictObject({
        tracer: z.custom<object>((v) => typeof v === 'object' && v !== null, 'must be an OpenTelemetry Tracer').optional(),
        meter: z.custom<object>((v) => typeof v === 'object' && v !== null, 'must be an OpenTelemetry Meter').optional(),
        recordContent: z.boolean().optional(),
      }),
    ])
    .optional(),
  /** Called once per finished request with tokens and cost. */
  onUsage: z.custom<(record: unknown) => void>((v) => typeof v === 'function', 'must be a function').optional(),
  /** The Responses API at `/responses` (on by default): stored responses, sealed reasoning, hosted tools; `false` turns it off. */
  responses: z
    .union([
      z.literal(false),
      z.strictObject({
        store: z
          .union([
            z.literal(false),
            z.custom<object>(
              (v) => typeof v === 'object' && v !== null && typeof (v as { put?: unknown }).put === 'function',
              'must implement the ResponseStore interface (or be false for zero retention)',
            ),
          ])
          .optional(),
        secrets: z.array(z.string().min(16, 'each secret needs at least 16 characters')).optional(),
        hostedTools: z.enum(['drop', 'reject']).optional(),
      }),
    ])
    .optional(),
  /** Repair gpt-oss Harmony leaks (on by default; free when nothing leaked). */
  harmony: z.literal(false).optional(),
  /** Replace or leave out a stage: a middleware of your own, or `false`. */
  stages: z.strictObject({ telemetry: stage, auth: stage, scope: stage, rateLimit: stage, harmony: stage }).optional(),
  /** How long `close()` lets streams in flight finish. */
  shutdownGraceMs: z.int().min(0).optional(),
  passthrough: z.array(z.string().regex(/^\/[A-Za-z0-9/_-]+$/, "must be a plain path such as '/tokenize'")).optional(),
  health: z.strictObject({ details: z.enum(['operator', 'public', 'none']).optional() }).optional(),
  prometheus: z.union([z.literal(false), z.strictObject({ access: z.enum(['operator', 'public']).optional() })]).optional(),
  models: z
    .strictObject({
      aliases: z
        .record(z.string().min(1).max(256), z.union([z.string(), z.strictObject({ model: z.string(), hidden: z.boolean().optional() })]))
        .optional(),
    })
    .optional(),
  prices: z.strictObject({ input: z.number().min(0), output: z.number().min(0) }).optional(),
});

// The schema and the interface name the same options at every level, or this does not compile.
type Keys<T> = keyof Exclude<NonNullable<T>, false>;
type Same<A, B> = [Exclude<A, B>, Exclude<B, A>] extends [never, never] ? true : { onlyInOne: Exclude<A, B> | Exclude<B, A> };
type Schema = z.input<typeof gatewayOptionsSchema>;
type Check<T extends true> = T;
export type OptionsMatchSchema = [
  Check<Same<keyof GatewayOptions, keyof Schema>>,
  Check<Same<Keys<GatewayOptions['upstream']>, Keys<Schema['upstream']>>>,
  Check<Same<Keys<GatewayOptions['validation']>, Keys<Schema['validation']>>>,
  Check<Same<Keys<GatewayOptions['reasoning']>, Keys<Schema['reasoning']>>>,
  Check<Same<Keys<GatewayOptions['toolCalls']>, Keys<Schema['toolCalls']>>>,
  Check<Same<Keys<GatewayOptions['auth']>, Keys<Schema['auth']>>>,
  Check<
    Same<
      Keys<NonNullable<Exclude<GatewayOptions['auth'], false>['keys']>[number]>,
      Keys<NonNullable<Exclude<Schema['auth'], false>['keys']>[number]>
    >
  >,
  Check<Same<Keys<GatewayOptions['rateLimit']>, Keys<Schema['rateLimit']>>>,
  Check<Same<Keys<GatewayOptions['budgets']>, Keys<Schema['budgets']>>>,
  Check<Same<Keys<GatewayOptions['admission']>, Keys<Schema['admission']>>>,
  Check<Same<Keys<GatewayOptions['telemetry']>, Keys<Schema['telemetry']>>>,
  Check<Same<Keys<GatewayOptions['responses']>, Keys<Schema['responses']>>>,
  Check<Same<Keys<GatewayOptions['stages']>, Keys<Schema['stages']>>>,
  Check<Same<Keys<GatewayOptions['health']>, Keys<Schema['health']>>>,
  Check<Same<Keys<GatewayOptions['prometheus']>, Keys<Schema['prometheus']>>>,
  Check<Same<Keys<GatewayOptions['models']>, Keys<Schema['models']>>>,
];

/** Checks the options once at start-up: a wrong option throws, naming itself. */
export function parseGatewayOptions(input: GatewayOptions): GatewayOptions {
  const result = gatewayOptionsSchema.safeParse(input, { reportInput: true });
  if (result.success) return input;
  const issue = result.error.issues[0]!;
  let what: string;
  if (issue.code === 'unrecognized_keys') {
    const path = formatParam(issue.path);
    what = `unknown option ${issue.keys.map((k) => `'${path ? `${path}.` : ''}${k}'`).join(', ')}`;
  } else {
    // Core's request validation already names the deepest field at fault inside a union.
    const error = issueToError(issue);
    what = `option '${error.param ?? '(root)'}': ${issue.code === 'invalid_union' ? error.message : issue.message}`;
  }
  throw new TypeError(`createGateway(): ${what}. See the options table in @tera-gw/gateway's README.`);
}
