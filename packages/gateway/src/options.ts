import { z } from 'zod';
import { admissionOptionsSchema } from '@tera-gw/admission';
import { keyEntrySchema, type KeyStore } from '@tera-gw/auth';
import { fn, implementing, parseOptions, validateOptionsSchema, type Logger, type Middleware } from '@tera-gw/core';
import { budgetOptionsSchema, rateLimitOptionsSchema } from '@tera-gw/rate-limit';
import { reasoningOptionsSchema } from '@tera-gw/reasoning';
import { responsesOptionsSchema } from '@tera-gw/responses';
import { telemetryOptionsSchema, type UsageRecord } from '@tera-gw/telemetry';
import { toolCallsOptionsSchema } from '@tera-gw/tool-calls';
import { vllmOptionsSchema } from '@tera-gw/vllm';

const off = z.literal(false);
const stage = z.union([fn<Middleware>('a middleware function (req, res, next)'), off]).optional();

/**
 * `createGateway()`'s options: each group is the schema of the package that owns it (the
 * adapter's, the limiter's, ...), so a package's options are written once, checked by its own
 * factory, and checked here at start-up with the same words. The type is inferred from it.
 */
export const gatewayOptionsSchema = z.strictObject({
  /** vLLM base URLs. */
  replicas: vllmOptionsSchema.shape.replicas,
  /** The upstream adapter's options (`@tera-gw/vllm`). */
  upstream: vllmOptionsSchema.omit({ replicas: true }).optional(),
  /** Request validation. @defaultValue `{ unknownFields: 'reject', maxBodyBytes: 4 MiB }` */
  validation: validateOptionsSchema.pick({ unknownFields: true, maxBodyBytes: true }).optional(),
  /** The reasoning normalizer (`@tera-gw/reasoning`), or `false`. */
  reasoning: z.union([off, reasoningOptionsSchema]).optional(),
  /** Tool-call repair (`@tera-gw/tool-calls`), or `false`. */
  toolCalls: z.union([off, toolCallsOptionsSchema]).optional(),
  /** API keys: a list (keys in clear or SHA-256) or a KeyStore of yours; `false` turns auth off (then put your own before the gateway). */
  auth: z.union([
    off,
    z
      .strictObject({
        keys: z.array(keyEntrySchema).optional(),
        keyStore: implementing<KeyStore>('a KeyStore', 'lookup').optional(),
      })
      .refine(
        (a) => a.keys !== undefined || a.keyStore !== undefined,
        "'auth' needs `keys` or `keyStore` (or `auth: false` with your own auth in front)",
      ),
  ]),
  /** The limiter (`@tera-gw/rate-limit`), or `false`. */
  rateLimit: z.union([off, rateLimitOptionsSchema.omit({ cost: true, logger: true })]).optional(),
  /** Spend budgets of keys that have one (`@tera-gw/rate-limit`'s `budgets()`; memory store by default), or `false`. */
  budgets: z.union([off, budgetOptionsSchema.omit({ prices: true, logger: true })]).optional(),
  /**
   * Queueing when the pool is full (`@tera-gw/admission`): per-flow queues by key (or the end user a
   * `fairnessFromHeader` key names) and priority, wait limits, overflow to `upstream.fallback`.
   * Holds nothing until a replica's capacity is known (`upstream.maxNumSeqs` or learned from `/metrics`).
   * `overflow.afterMs` defaults to 5000 when `upstream.fallback` is set. `false` turns it off.
   */
  admission: z.union([off, admissionOptionsSchema.omit({ pool: true })]).optional(),
  /** OpenTelemetry spans and metrics through the global API (a no-op until the app installs an SDK), or `false`. */
  telemetry: z.union([off, telemetryOptionsSchema.omit({ onUsage: true, model: true, prices: true, logger: true })]).optional(),
  /** Called once per finished request with tokens and cost. */
  onUsage: fn<(record: UsageRecord) => void>().optional(),
  /** Repair gpt-oss Harmony leaks (on by default; free when nothing leaked). */
  harmony: off.optional(),
  /** The Responses API at `/responses` (`@tera-gw/responses`, on by default), or `false`. */
  responses: z.union([off, responsesOptionsSchema.omit({ validation: true })]).optional(),
  /** Replace or leave out a stage: a middleware of your own, or `false`. */
  stages: z.strictObject({ telemetry: stage, auth: stage, scope: stage, rateLimit: stage, harmony: stage }).optional(),
  /** How long `close()` lets streams in flight finish. @defaultValue 30000 */
  shutdownGraceMs: z.int().min(0).default(30_000),
  /**
   * vLLM endpoints offered raw (off by default), e.g. `['/tokenize', '/detokenize', '/v1/completions']`:
   * served under the mount without `/v1` (`/v1/tokenize` when mounted at `/v1`), behind the same
   * guards as chat, sent to a ready replica with the upstream key, never the caller's.
   */
  passthrough: z.array(z.string().regex(/^\/[A-Za-z0-9/_-]+$/, "must be a plain path such as '/tokenize'")).optional(),
  /**
   * `GET /health`. Without an operator key it answers the status only: replica URLs and load
   * tell a tenant the deployment's layout and traffic. `details: 'operator'` adds them for keys
   * marked `operator: true`, `'public'` for everyone (a health port only operators reach), `'none'` never.
   */
  health: z.strictObject({ details: z.enum(['operator', 'public', 'none']).default('operator') }).prefault({}),
  /**
   * `gateway.metrics` serves the metrics in Prometheus text format from a meter provider of the
   * gateway's own (unless `telemetry.meter` is given). Per-key usage is for operator keys
   * (`access: 'operator'`) or anyone who reaches the path (`'public'`); `false` turns it off.
   */
  prometheus: z.union([off, z.strictObject({ access: z.enum(['operator', 'public']).default('operator') })]).prefault({}),
  /**
   * Other model names served by `openai/gpt-oss-20b`, e.g. `{ aliases: { 'gpt-4o-mini': 'openai/gpt-oss-20b' } }`:
   * the answer and usage name what was asked, key scopes may list the alias or the model, and
   * `/v1/models` lists each alias unless it is `{ model, hidden: true }`.
   */
  models: z
    .strictObject({
      aliases: z
        .record(z.string(), z.union([z.string(), z.strictObject({ model: z.string(), hidden: z.boolean().optional() })]))
        .optional(),
    })
    .optional(),
  /**
   * USD per million input / output tokens (reasoning is output): the cost in usage records,
   * spans and Prometheus, and what budgets spend. @defaultValue `{ input: 0.07, output: 0.25 }`
   */
  prices: z.strictObject({ input: z.number().min(0), output: z.number().min(0) }).optional(),
  /** Where every stage logs (pino, or a logger of its shape). @defaultValue the console, warnings and errors only */
  logger: implementing<Logger>('a logger (pino or one of its shape)', 'error', 'warn', 'info', 'debug', 'child').optional(),
});

export type GatewayOptions = z.input<typeof gatewayOptionsSchema>;
export type ParsedGatewayOptions = z.output<typeof gatewayOptionsSchema>;

/** Checks the options once at start-up: a wrong option throws, naming itself. */
export function parseGatewayOptions(input: GatewayOptions): ParsedGatewayOptions {
  try {
    return parseOptions(gatewayOptionsSchema, input, 'createGateway()');
  } catch (err) {
    throw new TypeError(`${(err as Error).message} See the options table in @tera-gw/gateway's README.`, { cause: err });
  }
}
