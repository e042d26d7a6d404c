import { Agent, request, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { ReplicaBreaker, type BreakerOptions } from '@tera-gw/circuit-breaker';

/**
 * cold: not checked yet; warming: healthy, warm-up completion in flight; ready: takes traffic;
 * unhealthy: out of rotation until a health check passes; draining: left the set, finishing what it runs.
 */
export type ReplicaState = 'cold' | 'warming' | 'ready' | 'unhealthy' | 'draining';

export interface ReplicaStatus {
  url: string;
  state: ReplicaState;
  breaker: 'closed' | 'open' | 'halfOpen';
  inFlight: number;
  /** Requests it runs at once (configured `maxNumSeqs` or learned from `/metrics`); absent while unknown. */
  capacity?: number;
}

/** `vllm:kv_cache_usage_perc` at or above which a replica has no room, whatever its running count. */
export const KV_CACHE_FULL = 0.98;

/** One vLLM server: its address, a keep-alive agent, its breaker, and what the gateway knows of it. */
export class Replica {
  readonly id: string;
  readonly url: URL;
  readonly secure: boolean;
  readonly agent: Agent;
  readonly breaker: ReplicaBreaker;
  /** Path prefix before `/v1/...`, e.g. '' or '/vllm-a'. */
  readonly basePath: string;
  state: ReplicaState = 'cold';
  inFlight = 0;
  /** Streams relayed from this replica now: a draining replica's are moved after the drain timeout. */
  readonly streams = new Set<{ moveAway(): void }>();
  /** Set while the replica drains: when its streams move elsewhere. */
  drainTimer: NodeJS.Timeout | undefined;
  /** Last values scraped from `/metrics`; undefined while none could be read. */
  metrics: { waiting?: number; running?: number; kvCacheUsage?: number } | undefined;
  consecutiveHealthFailures = 0;
  /**
   * Sequences the replica runs at once (vLLM's `--max-num-seqs`, or fewer when its KV cache
   * binds), as learned from `/metrics`: what ran while others had to wait. Kept while the replica
   * is out of rotation (the best guess when it returns) and corrected by the next scrape that
   * shows requests waiting (lower) or more running than it (higher).
   */
  learnedCapacity: number | undefined;

  /** The URL it was configured as (a host name stands for all its addresses). */
  readonly configured: string;
  /** The `Host` header when the connection goes to an address of a name; undefined for an address given as such. */
  readonly hostHeader: string | undefined;
  /** The host to connect to (an IPv6 address without its brackets). */
  readonly connectHost: string;
  /** Called when the capacity learned from `/metrics` changes. */
  onCapacity: ((capacity: number) => void) | undefined;

  constructor(
    base: string,
    breakerOptions?: BreakerOptions,
    /** Configured `maxNumSeqs`: overrides what `/metrics` shows. */
    readonly maxNumSeqs?: number,
    /** One address the URL's host name resolves to: the connection goes there. */
    readonly address?: string,
  ) {
    const url = new URL(base);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`replica URL must be http(s): ${base}`);
    this.configured = base;
    this.secure = url.protocol === 'https:';
    this.basePath = url.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
    if (address !== undefined) {
      this.hostHeader = url.host;
      const target = new URL(url.href);
      target.hostname = address.includes(':') ? `[${address}]` : address;
      this.url = target;
    } else {
      this.hostHeader = undefined;
      this.url = url;
    }
    this.id = `${this.url.protocol}//${this.url.host}${this.basePath}`;
    this.connectHost = this.url.hostname.replace(/^\[|\]$/g, '');
    // Without keep-alive a Node proxy spends its time in TCP handshakes.
    const agentOptions = { keepAlive: true, keepAliveMsecs: 1000, maxSockets: Infinity, maxFreeSockets: 256, scheduling: 'lifo' as const };
    this.agent = this.secure ? new HttpsAgent(agentOptions) : new Agent(agentOptions);
    this.breaker = new ReplicaBreaker(this.id, breakerOptions);
  }

  /** Ready, and the breaker admits a request (closed, or half-open with its probe slot free). */
  get available(): boolean {
    return this.state === 'ready' && this.breaker.allowsRequest();
  }

  /** Requests it runs at once, configured or learned; undefined while unknown. */
  get capacity(): number | undefined {
    return this.maxNumSeqs ?? this.learnedCapacity;
  }

  /** Requests it would start now without queueing them in its own FIFO; Infinity while its capacity is unknown. */
  get room(): number {
    const capacity = this.capacity;
    if (capacity === undefined) return Infinity;
    // A KV cache this full makes vLLM preempt and queue whatever the running count says; with nothing of ours
    // running there, the gauge is someone else's load (or stale) and one request may still go.
    if ((this.metrics?.kvCacheUsage ?? 0) >= KV_CACHE_FULL && this.inFlight > 0) return 0;
    return Math.max(0, capacity - this.inFlight);
  }

  /** Learns the running limit from a scrape: what ran while requests waited is the most it runs. */
  learn(metrics: { waiting?: number; running?: number } | undefined): void {
    const running = metrics?.running;
    if (running === undefined || this.maxNumSeqs !== undefined) return;
    const before = this.learnedCapacity;
    if ((metrics?.waiting ?? 0) > 0 && running > 0) this.learnedCapacity = running;
    else if (this.learnedCapacity !== undefined && running > this.learnedCapacity) this.learnedCapacity = running;
    if (this.learnedCapacity !== undefined && this.learnedCapacity !== before) this.onCapacity?.(this.learnedCapacity);
  }

  status(): ReplicaStatus {
    const out: ReplicaStatus = { url: this.id, state: this.state, breaker: this.breaker.state, inFlight: this.inFlight };
    if (this.capacity !== undefined) out.capacity = this.capacity;
    return out;
  }

  /** A small request outside the proxy path (health, warm-up, metrics). */
  call(
    method: string,
    path: string,
    options: { body?: string; timeoutMs: number; headers?: Record<string, string> },
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const send = this.secure ? httpsRequest : request;
      const req = send(
        {
          agent: this.agent,
          hostname: this.connectHost,
          port: this.url.port,
          path: this.basePath + path,
          method,
          headers: {
            ...(this.hostHeader ? { host: this.hostHeader } : {}),
            ...(options.body === undefined
              ? {}
              : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(options.body) }),
            ...options.headers,
          },
        },
        (res: IncomingMessage) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, body });
          });
          res.on('error', fail);
        },
      );
      const timer = setTimeout(() => req.destroy(new Error(`timed out after ${options.timeoutMs} ms`)), options.timeoutMs);
      function fail(err: Error) {
        clearTimeout(timer);
        reject(err);
      }
      req.on('error', fail);
      req.end(options.body);
    });
  }

  close(): void {
    this.breaker.shutdown();
    this.agent.destroy();
  }
}
