import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { UpstreamFault, type BreakerState } from '@tera-gw/circuit-breaker';
import {
  loadTokenizer,
  parseOptions,
  type Middleware,
  type ModelOutputFailure,
  type RequestContext,
  type RequestFailure,
  type UpstreamPool,
} from '@tera-gw/core';
import { createRouter, leastRequest } from '@tera-gw/router';
import { ClientGone, sendAttempt, type Attempt, type Timeouts } from './attempt.js';
import { vllmOptionsSchema, type VllmOptions } from './options.js';
import { createPool } from './pool.js';

type ParsedOptions = ReturnType<typeof vllmOptionsSchema.parse>;
import { HealthMonitor } from './health.js';
import { Replica, type ReplicaStatus } from './replica.js';
import { ReplicaSet, resolveAll } from './replica-set.js';
import { cacheSalter } from './cache-salt.js';
import { createServe } from './serve.js';

export interface AdapterEvents {
  attempt: [ctx: RequestContext, replica: string, attempt: number];
  /** An attempt failed and another follows: a replica fault, or a failure that is not the replica's (the model's output, a request vLLM answered with a JSON 500). */
  retry: [ctx: RequestContext, replica: string, fault: UpstreamFault | ModelOutputFailure | RequestFailure];
  /** The stream failed after bytes had gone to the client. */
  midStreamFailure: [ctx: RequestContext, replica: string, reason: string];
  clientAbort: [ctx: RequestContext];
  breaker: [replica: string, state: BreakerState];
  /** A replica changed state (`cause`: why it left rotation, when it did). */
  replicaState: [replica: string, state: ReplicaStatus['state'], cause: string | undefined];
  /** A replica joined the set (its name resolved to a new address, or `setReplicas`). */
  replicaAdded: [replica: string];
  /** A replica that left the set finished what it ran and is gone. */
  replicaRemoved: [replica: string];
  /** The capacity learned from a replica's `/metrics` changed. */
  capacity: [replica: string, capacity: number];
  /** A host name of `replicas` could not be resolved: its replicas stay as they were. */
  resolveError: [url: string, error: string];
  /**
   * A stream's replica failed after text: `started` (another replica continues it), `completed`
   * (the continuation finished the stream), `no_replica` or `limit` (not resumed: the error event).
   */
  resume: [ctx: RequestContext, replica: string, outcome: 'started' | 'completed' | 'no_replica' | 'limit'];
}

export interface VllmAdapter extends Middleware {
  /** Resolves once at least one replica is warm and ready (or rejects after `timeoutMs`). */
  readonly ready: (timeoutMs?: number) => Promise<void>;
  readonly replicas: () => ReplicaStatus[];
  readonly events: EventEmitter<AdapterEvents>;
  /** Stops health checks and closes upstream connections. */
  readonly close: () => void;
  /**
   * Replaces the replica URLs: new ones join after their health check and warm-up, those no longer
   * named drain (no new request; what runs there finishes). A host name stands for every address
   * it resolves to, re-resolved every `dnsRefreshMs`.
   */
  readonly setReplicas: (urls: readonly string[]) => Promise<void>;
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

const isHostName = (url: string) => isIP(new URL(url).hostname.replace(/^\[|\]$/g, '')) === 0;

/** The overflow provider as a replica of its own: not health-checked (a hosted provider is taken as up), its breaker still guards it. */
function fallbackReplica(fallback: NonNullable<ParsedOptions['fallback']>, breaker: ParsedOptions['breaker']) {
  const replica = new Replica(fallback.url, breaker);
  replica.state = 'ready';
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  if (fallback.apiKey) headers.authorization = `Bearer ${fallback.apiKey}`;
  return { replica, headers, model: fallback.model };
}

export function vllm(input: VllmOptions): VllmAdapter {
  const options = parseOptions(vllmOptionsSchema, input, 'vllm()');
  const { timeouts, maxAttempts } = options;
  const router =
    options.router ??
    createRouter({
      strategy: options.routing ?? (options.replicas.length > 1 || options.replicas.some(isHostName) ? 'cache-aware' : 'least-request'),
    });
  const retryAfter = options.retryAfterSeconds;
  const NEVER_FORWARDED = new Set([
    'authorization',
    'openai-organization',
    'openai-project',
    'cookie',
    'host',
    'content-length',
    'x-request-id',
  ]);
  const forwardHeaders = options.forwardHeaders.map((h) => h.toLowerCase()).filter((h) => !NEVER_FORWARDED.has(h));
  const events = new EventEmitter<AdapterEvents>();
  const set = new ReplicaSet({
    breaker: options.breaker,
    maxNumSeqs: options.maxNumSeqs,
    resolve: options.resolve ?? resolveAll,
    onAdded: (r) => {
      r.breaker.on('state', (_replica, state) => {
        events.emit('breaker', r.id, state);
        roomMayHaveGrown();
      });
      r.onCapacity = (capacity) => events.emit('capacity', r.id, capacity);
      events.emit('replicaAdded', r.id);
      monitor.added(r);
    },
    onDraining: (r) => {
      // Streams still running when the drain timeout ends are resumed elsewhere: a drain never breaks a stream, nor waits forever.
      if (options.resume !== false) {
        const drainTimeoutMs = options.resume.drainTimeoutMs;
        r.drainTimer = setTimeout(() => {
          for (const stream of [...r.streams]) stream.moveAway();
        }, drainTimeoutMs);
        r.drainTimer.unref();
      }
      events.emit('replicaState', r.id, 'draining', 'it left the set of replicas');
      roomMayHaveGrown();
    },
    onRemoved: (r) => {
      clearTimeout(r.drainTimer);
      events.emit('replicaRemoved', r.id);
    },
    onResolveError: (url, err) => events.emit('resolveError', url, err instanceof Error ? err.message : String(err)),
  });
  const pool = createPool(() => set.all);
  const roomMayHaveGrown = () => {
    set.sweep();
    pool.changed();
  };
  const monitor = new HealthMonitor(
    () => set.active,
    options.health,
    options.apiKey,
    (r, cause) => {
      events.emit('replicaState', r.id, r.state, cause);
      roomMayHaveGrown();
    },
    roomMayHaveGrown,
  );
  set.setLiterals(options.replicas);
  monitor.start();
  // Names are resolved now and every `dnsRefreshMs`, so an address that appears joins and one that disappears drains.
  const resolving = set.resolvesNames ? set.refresh() : Promise.resolve();
  const dnsTimer = setInterval(() => {
    if (set.resolvesNames) void set.refresh();
  }, options.dnsRefreshMs);
  dnsTimer.unref();
  const baseHeaders: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  if (options.apiKey) baseHeaders.authorization = `Bearer ${options.apiKey}`;

  const cacheSalt = cacheSalter(options.cacheIsolation, options.cacheSaltSecret);
  // Reasoning tokens are counted from the text, and an aborted prompt billed from the gateway's count: load the tokenizer now, off the request path.
  loadTokenizer().catch(() => undefined);
  const outputChecks = options.outputChecks;
  const fallback = options.fallback ? fallbackReplica(options.fallback, options.breaker) : undefined;
  const serve = createServe({
    fallback,
    onRelease: roomMayHaveGrown,
    replicas: () => set.active,
    markDown: (replica, cause) => monitor.markDown(replica, cause),
    router,
    maxAttempts,
    timeouts,
    events,
    baseHeaders,
    forwardHeaders,
    retryAfter,
    cacheSalt,
    outputChecks,
    maxResumes: options.resume === false ? 0 : options.resume.maxResumes,
  });
  const candidates = (): Replica[] => set.active.filter((r) => r.available);
  const upstreamKey: Record<string, string> = options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {};
  /** The least loaded of `from`, counted in flight until released; a connection-level fault released with it counts against its breaker. */
  const pickForPassthrough = (from: readonly Replica[]): PickedReplica | undefined => {
    const replica = leastRequest(from);
    if (!replica) return undefined;
    replica.inFlight++;
    let released = false;
    return {
      base: replica.id,
      send: (path, payload, callerHeaders, signal) =>
        sendAttempt(replica, payload, { ...callerHeaders, ...upstreamKey }, timeouts, signal, path),
      release: (fault) => {
        if (released) return;
        released = true;
        replica.inFlight--;
        if (fault) replica.breaker.recordFailure(fault);
        roomMayHaveGrown();
      },
    };
  };

  const handler: Middleware = function vllmUpstream(req, res, next) {
    serve(req, res).catch((err: unknown) => {
      if (err instanceof ClientGone) return;
      next(err);
    });
  };

  return Object.assign(handler, {
    events,
    ready: async (timeoutMs = 30_000) => {
      await resolving;
      await monitor.ready(timeoutMs);
    },
    replicas: () => set.all.map((r) => r.status()),
    setReplicas: async (urls: readonly string[]) => {
      await set.set(parseOptions(vllmOptionsSchema.shape.replicas, urls, 'setReplicas()'));
      roomMayHaveGrown();
    },
    cacheSalt: (ctx: RequestContext, callerSalt?: string) => cacheSalt(ctx, callerSalt),
    pickReplica: (exclude?: ReadonlySet<string>) => pickForPassthrough(candidates().filter((r) => !exclude?.has(r.id))),
    timeouts,
    pool,
    close: () => {
      clearInterval(dnsTimer);
      monitor.stop();
      set.close();
      fallback?.replica.close();
      pool.clear();
    },
  });
}
