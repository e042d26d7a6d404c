import { z } from 'zod';
import { breakerOptionsSchema } from '@tera-gw/circuit-breaker';
import { fn, implementing } from '@tera-gw/core';
import type { Router } from '@tera-gw/router';

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });

/** Active health checks and warm-up of each replica. */
export const healthOptionsSchema = z.strictObject({
  /** Between active checks of each replica. @defaultValue 5000 ms */
  intervalMs: z.int().positive().default(5000),
  /** Per check. @defaultValue 2000 ms */
  timeoutMs: z.int().positive().default(2000),
  /** Consecutive failed checks that take a ready replica out of rotation. @defaultValue 2 */
  unhealthyThreshold: z.int().positive().default(2),
  /** Send one tiny completion before a replica takes traffic (vLLM's first request compiles CUDA graphs). @defaultValue true */
  warmUp: z.boolean().default(true),
  /** How long the warm-up completion may take. @defaultValue 60000 ms */
  warmUpTimeoutMs: z.int().positive().default(60_000),
  /** Between scrapes of each replica's `/metrics` (waiting queue, KV cache use) for routing; 0 turns scraping off. @defaultValue 2000 ms */
  metricsIntervalMs: z.int().min(0).default(2000),
});

export type HealthOptions = z.output<typeof healthOptionsSchema>;

export const timeoutsSchema = z.strictObject({
  /** TCP connect to a replica. @defaultValue 5000 ms */
  connectMs: z.int().positive().default(5000),
  /** From sending the request to the response headers; generous because of cold starts. @defaultValue 60000 ms */
  firstByteMs: z.int().positive().default(60_000),
  /** Longest silence between two pieces of a response body. @defaultValue 30000 ms */
  idleMs: z.int().positive().default(30_000),
  /** Whole request, stream included. @defaultValue 600000 ms */
  totalMs: z.int().positive().default(600_000),
});

export type Timeouts = z.output<typeof timeoutsSchema>;

export const vllmOptionsSchema = z.strictObject({
  /**
   * Base URLs of the vLLM servers, e.g. `http://10.0.0.5:8000` (a trailing `/v1` is accepted). A
   * host name stands for every address it resolves to (a Kubernetes headless Service), re-resolved
   * every `dnsRefreshMs`.
   */
  replicas: z.array(httpUrl).min(1, 'give at least one vLLM base URL'),
  /** Between resolutions of the host names in `replicas`. @defaultValue 5000 ms */
  dnsRefreshMs: z.int().positive().default(5000),
  /** How a host name becomes addresses. @defaultValue every address `dns.lookup` returns */
  resolve: fn<(hostname: string) => Promise<string[]>>().optional(),
  /**
   * Sequences each replica runs at once (its `--max-num-seqs`), by base URL as given in `replicas`,
   * or one number for all. Without it, capacity is learned from each replica's `/metrics`.
   */
  maxNumSeqs: z.union([z.int().positive(), z.record(z.string(), z.int().positive())]).optional(),
  /**
   * An OpenAI-compatible provider for overflow (e.g. hosted Tera): a request the admission stage
   * marks `overflow` goes here instead of the pool, through the same response transforms, with
   * `X-Tera-Served-By: fallback`. `url` is its base URL (`https://host/v1`), `model` the name it
   * serves the model under. Never used for anything else.
   */
  fallback: z.strictObject({ url: httpUrl, apiKey: z.string().optional(), model: z.string().min(1).optional() }).optional(),
  /** Sent as `Authorization: Bearer` to the replicas when vLLM runs with `--api-key`. The caller's key is never forwarded. */
  apiKey: z.string().optional(),
  timeouts: timeoutsSchema.prefault({}),
  /** Attempts per request across different replicas. @defaultValue 3 */
  maxAttempts: z.int().min(1).max(10).default(3),
  /** Active health checks and warm-up; `false` treats every replica as ready at once. */
  health: z.union([z.literal(false), healthOptionsSchema]).prefault({}),
  /** One breaker per replica (`@tera-gw/circuit-breaker`). */
  breaker: breakerOptionsSchema.optional(),
  /**
   * `cache-aware` keeps each conversation on the replica that holds its prefix (prefix, load and
   * KV-cache scores; `prompt_cache_key` by rendezvous hashing); `least-request` balances in-flight counts.
   * @defaultValue `cache-aware` with more than one replica
   */
  routing: z.enum(['cache-aware', 'least-request']).optional(),
  /** A router of your own (overrides `routing`). */
  router: implementing<Router>('a Router', 'pick').optional(),
  /** `Retry-After` seconds when no replica is available. @defaultValue 2 */
  retryAfterSeconds: z.int().positive().default(2),
  /**
   * Caller headers passed to the replicas, by lower-case name. Nothing else is forwarded
   * (never `Authorization`, `OpenAI-Organization`, `OpenAI-Project`, cookies).
   * @defaultValue `['traceparent', 'tracestate']`
   */
  forwardHeaders: z.array(z.string()).default(['traceparent', 'tracestate']),
  /**
   * Prompt-cache isolation: each request carries vLLM's `cache_salt`, an HMAC of the key id
   * (`key`) or of the key's `team` (`team`; keys without one stay alone), so no tenant can time
   * another's cached prefixes; the router's prefix index is partitioned the same way. `none`
   * shares caches across all keys (single-tenant deployments).
   * @defaultValue `'key'`
   */
  cacheIsolation: z.enum(['key', 'team', 'none']).default('key'),
  /**
   * The HMAC secret behind `cache_salt`. Give the same one to every gateway host in front of the
   * same replicas, or a tenant's cache is not shared between hosts. @defaultValue random per process
   */
  cacheSaltSecret: z.string().min(16, 'needs at least 16 characters').optional(),
  /**
   * gpt-oss failures vLLM lets through, retried before any text reaches the caller (like
   * Harmony parser errors, which are always retried): `emptyCompletions` (tokens generated,
   * no text), `structuredOutput` (a strict `json_schema` or a `json_object` answer that breaks
   * it; in a stream, text has gone out, so the violation ends it with an error event).
   */
  /**
   * A stream whose replica fails after text reached the caller (reset, closed, a broken body, an
   * error event of the replica's) is continued on another ready replica from its last token: the
   * chat request asks `return_token_ids` (vLLM 0.10.2+), and the continuation goes to
   * `/v1/completions` as the prompt's ids plus the generated ones. `false` ends such streams with
   * an error event. Streams with structured output, stop sequences or logprobs are not resumed.
   */
  resume: z
    .union([
      z.literal(false),
      z.strictObject({
        /** Resumptions per stream. @defaultValue 2 */
        maxResumes: z.int().min(1).max(5).default(2),
        /**
         * A replica leaving the set drains: no new requests, its streams finish there; those still
         * running after this long are resumed on another replica. @defaultValue 30000
         */
        drainTimeoutMs: z.int().min(0).default(30_000),
      }),
    ])
    .prefault({}),
  outputChecks: z
    .strictObject({
      /** @defaultValue true */
      emptyCompletions: z.boolean().default(true),
      /** @defaultValue true */
      structuredOutput: z.boolean().default(true),
    })
    .prefault({}),
});

export type VllmOptions = z.input<typeof vllmOptionsSchema>;
