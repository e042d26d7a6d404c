import { EventEmitter } from 'node:events';
import { UpstreamFault, type BreakerOptions, type BreakerState } from '@tera-gw/circuit-breaker';
import { loadTokenizer, type Middleware, type ModelOutputFailure, type RequestContext, type RequestFailure } from '@tera-gw/core';
import { createRouter, leastRequest, type Router } from '@tera-gw/router';
import { ClientGone, sendAttempt, type Attempt, type Timeouts } from './attempt.js';
import { HealthMonitor, type HealthOptions } from './health.js';
import { Replica, type ReplicaStatus } from './replica.js';
import { cacheSalter } from './cache-salt.js';
import { createServe } from './serve.js';

export interface VllmOptions {
  /** Base URLs of the vLLM servers, e.g. `http://10.0.0.5:8000` (a trailing `/v1` is accepted). */
  replicas: readonly string[];
  /**
   * Sequences each replica runs at once (its `--max-num-seqs`), by base URL as given in `replicas`,
   * or one number for all. Without it, capacity is learned from each replica's `/metrics`.
   */
  maxNumSeqs?: number | Readonly<Record<string, number>>;
  /**
   * An OpenAI-compatible provider for overflow (e.g. hosted Tera): a request the admission stage
   * marks `overflow` goes here instead of the pool, through the same response transforms, with
   * `X-Tera-Served-By: fallback`. `url` is its base URL (`https://host/v1`), `model` the name it
   * serves the model under. Never used for anything else.
   */
  fallback?: { url: string; apiKey?: string; model?: string };
  /** Sent as `Authorization: Bearer` to the replicas when vLLM runs with `--api-key`. The caller's key is never forwarded. */
  apiKey?: string;
  timeouts?: Partial<Timeouts>;
  /** Attempts per request across different replicas. @defaultValue 3 */
  maxAttempts?: number;
  /** Active health checks and warm-up; `false` treats every replica as ready at once. */
  health?: Partial<HealthOptions> | false;
  breaker?: BreakerOptions;
  /**
   * `cache-aware` keeps each conversation on the replica that holds its prefix (prefix, load and
   * KV-cache scores; `prompt_cache_key` by rendezvous hashing); `least-request` balances in-flight counts.
   * @defaultValue `cache-aware` with more than one replica
   */
  routing?: 'cache-aware' | 'least-request';
  /** A router of your own (overrides `routing`). */
  router?: Router;
  /** `Retry-After` seconds when no replica is available. @defaultValue 2 */
  retryAfterSeconds?: number;
  /**
   * Caller headers passed to the replicas, by lower-case name. Nothing else is forwarded
   * (never `Authorization`, `OpenAI-Organization`, `OpenAI-Project`, cookies).
   * @defaultValue `['traceparent', 'tracestate']`
   */
  forwardHeaders?: readonly string[];
  /**
   * Prompt-cache isolation: each request carries vLLM's `cache_salt`, an HMAC of the key id
   * (`key`) or of the key's `team` (`team`; keys without one stay alone), so no tenant can time
   * another's cached prefixes; the router's prefix index is partitioned the same way. `none`
   * shares caches across all keys (single-tenant deployments).
   * @defaultValue `'key'`
   */
  cacheIsolation?: 'key' | 'team' | 'none';
  /**
   * The HMAC secret behind `cache_salt`. Give the same one to every gateway host in front of the
   * same replicas, or a tenant's cache is not shared between hosts. @defaultValue random per process
   */
  cacheSaltSecret?: string;
  /**
   * gpt-oss failures vLLM lets through, retried before any text reaches the caller (like
   * Harmony parser errors, which are always retried): `emptyCompletions` (tokens generated,
   * no text), `structuredOutput` (a strict `json_schema` or a `json_object` answer that breaks
   * it; in a stream, text has gone out, so the violation ends it with an error event).
   * @defaultValue both `true`
   */
  outputChecks?: { emptyCompletions?: boolean; structuredOutput?: boolean };
}

export interface AdapterEvents {
  attempt: [ctx: RequestContext, replica: string, attempt: number];
  /** An attempt failed and another follows: a replica fault, or a failure that is not the replica's (the model's output, a request vLLM answered with a JSON 500). */
  retry: [ctx: RequestContext, replica: string, fault: UpstreamFault | ModelOutputFailure | RequestFailure];
  /** The stream failed after bytes had gone to the client. */
  midStreamFailure: [ctx: RequestContext, replica: string, reason: string];
  clientAbort: [ctx: RequestContext];
  breaker: [replica: string, state: BreakerState];
  replicaState: [replica: string, state: ReplicaStatus['state']];
}

export interface VllmAdapter extends Middleware {
  /** Resolves once at least one replica is warm and ready (or rejects after `timeoutMs`). */
  readonly ready: (timeoutMs?: number) => Promise<void>;
  readonly replicas: () => ReplicaStatus[];
  readonly events: EventEmitter<AdapterEvents>;
  /** Stops health checks and closes upstream connections. */
  readonly close: () => void;
  /**
   * A replica for a raw pass-through request (`/tokenize`...): ready, breaker not open, fewest in
   * flight, none of `exclude`. `send` makes the request on the adapter's own connections, with
   * only the headers given (plus the upstream key); `release` ends its in-flight count, and
   * `release(fault)` also counts a connection-level fault against its breaker. Undefined when none
   * is available.
   */
  readonly pickReplica: (exclude?: ReadonlySet<string>) => PickedReplica | undefined;
  /** The adapter's timeouts, for callers that read an answer themselves. */
  readonly timeouts: Readonly<Timeouts>;
  /** The `cache_salt` this request's tenant gets (per `cacheIsolation`), for raw pass-through bodies; undefined with `'none'`. */
  readonly cacheSalt: (ctx: RequestContext, callerSalt?: string) => string | undefined;
  /** Room in the pool, for `@tera-gw/admission`: replicas' capacity (configured or learned) minus what runs there. */
  readonly pool: UpstreamPool;
}

export interface PickedReplica {
  readonly base: string;
  send(path: string, payload: Buffer, headers: Record<string, string>, signal: AbortSignal): Promise<Attempt>;
  release(fault?: UpstreamFault): void;
}

/** The pool as the admission stage sees it (structurally `@tera-gw/admission`'s `AdmissionPool`). */
export interface UpstreamPool {
  room(): number;
  down(): boolean;
  reserve(): { settle(): void };
  onChange(listener: () => void): () => void;
}

const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 5000, firstByteMs: 60_000, idleMs: 30_000, totalMs: 600_000 };

export function vllm(options: VllmOptions): VllmAdapter {
  if (!options.replicas?.length) throw new Error('vllm(): `replicas` needs at least one URL');
  const timeouts: Timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  const maxAttempts = options.maxAttempts ?? 3;
  const router =
    options.router ?? createRouter({ strategy: options.routing ?? (options.replicas.length > 1 ? 'cache-aware' : 'least-request') });
  const retryAfter = options.retryAfterSeconds ?? 2;
  const NEVER_FORWARDED = new Set([
    'authorization',
    'openai-organization',
    'openai-project',
    'cookie',
    'host',
    'content-length',
    'x-request-id',
  ]);
  const forwardHeaders = (options.forwardHeaders ?? ['traceparent', 'tracestate'])
    .map((h) => h.toLowerCase())
    .filter((h) => !NEVER_FORWARDED.has(h));
  const events = new EventEmitter<AdapterEvents>();
  const seqs = options.maxNumSeqs;
  const replicas = options.replicas.map(
    (url) => new Replica(url, options.breaker, typeof seqs === 'number' ? seqs : (seqs?.[url] ?? seqs?.[url.replace(/\/+$/, '')])),
  );
  const roomListeners = new Set<() => void>();
  const roomMayHaveGrown = () => {
    for (const listener of roomListeners) listener();
  };
  for (const r of replicas)
    r.breaker.on('state', (_replica, state) => {
      events.emit('breaker', r.id, state);
      roomMayHaveGrown();
    });
  const monitor = new HealthMonitor(
    replicas,
    options.health === false ? false : (options.health ?? {}),
    options.apiKey,
    (r) => {
      events.emit('replicaState', r.id, r.state);
      roomMayHaveGrown();
    },
    roomMayHaveGrown,
  );
  monitor.start();
  const baseHeaders: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  if (options.apiKey) baseHeaders.authorization = `Bearer ${options.apiKey}`;

  const cacheSalt = cacheSalter(options.cacheIsolation ?? 'key', options.cacheSaltSecret);
  // Reasoning tokens are counted from the text, and an aborted prompt billed from the gateway's count: load the tokenizer now, off the request path.
  loadTokenizer().catch(() => undefined);
  const outputChecks = {
    emptyCompletions: options.outputChecks?.emptyCompletions ?? true,
    structuredOutput: options.outputChecks?.structuredOutput ?? true,
  };
  // Room held for requests admitted but not yet in flight on a replica (their costly checks run first).
  let reserved = 0;
  const pool: UpstreamPool = {
    room() {
      let room = 0;
      let anyAvailable = false;
      for (const r of replicas) {
        if (!r.available) continue;
        anyAvailable = true;
        // Summed, not floored per replica: one over its capacity (affinity kept a conversation there) takes room from the pool.
        const capacity = r.capacity;
        if (capacity === undefined) room = Infinity;
        else if (r.room === 0 && r.inFlight < capacity) continue;
        else room += capacity - r.inFlight;
      }
      // No replica up: full if a capacity was ever known (then requests wait for one to return), else nothing is held.
      if (!anyAvailable) return replicas.some((r) => r.capacity !== undefined) ? 0 : Infinity;
      return room - reserved;
    },
    down: () => !replicas.some((r) => r.available),
    reserve() {
      reserved++;
      let settled = false;
      return {
        settle() {
          if (settled) return;
          settled = true;
          reserved--;
          roomMayHaveGrown();
        },
      };
    },
    onChange(listener) {
      roomListeners.add(listener);
      return () => roomListeners.delete(listener);
    },
  };
  const fallback = options.fallback
    ? (() => {
        const replica = new Replica(options.fallback.url, options.breaker);
        // Not health-checked: a hosted provider is taken as up; its breaker still guards it.
        replica.state = 'ready';
        const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
        if (options.fallback.apiKey) headers.authorization = `Bearer ${options.fallback.apiKey}`;
        return { replica, headers, model: options.fallback.model };
      })()
    : undefined;
  const serve = createServe({
    fallback,
    onRelease: roomMayHaveGrown,
    replicas,
    router,
    maxAttempts,
    timeouts,
    events,
    baseHeaders,
    forwardHeaders,
    retryAfter,
    cacheSalt,
    outputChecks,
  });
  const candidates = (): Replica[] => replicas.filter((r) => r.available);

  const handler: Middleware = function vllmUpstream(req, res, next) {
    serve(req, res).catch((err: unknown) => {
      if (err instanceof ClientGone) return;
      next(err);
    });
  };

  return Object.assign(handler, {
    events,
    ready: (timeoutMs = 30_000) => monitor.ready(timeoutMs),
    replicas: () => replicas.map((r) => r.status()),
    cacheSalt: (ctx: RequestContext, callerSalt?: string) => cacheSalt(ctx, callerSalt),
    pickReplica: (exclude?: ReadonlySet<string>) => {
      const replica = leastRequest(candidates().filter((r) => !exclude?.has(r.id)));
      if (!replica) return undefined;
      replica.inFlight++;
      let released = false;
      const headers: Record<string, string> = options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {};
      return {
        base: replica.id,
        send: (path: string, payload: Buffer, callerHeaders: Record<string, string>, signal: AbortSignal) =>
          sendAttempt(replica, payload, { ...callerHeaders, ...headers }, timeouts, signal, path),
        release: (fault?: UpstreamFault) => {
          if (released) return;
          released = true;
          replica.inFlight--;
          if (fault) replica.breaker.recordFailure(fault);
          roomMayHaveGrown();
        },
      };
    },
    timeouts,
    pool,
    close: () => {
      monitor.stop();
      for (const r of replicas) r.close();
      fallback?.replica.close();
      roomListeners.clear();
    },
  });
}
