import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import { parseOptions } from '@tera-gw/core';
import { breakerOptionsSchema, type BreakerOptions } from './options.js';

export type BreakerState = 'closed' | 'open' | 'halfOpen';

/** An upstream fault: the only kind of failure a breaker counts (5xx, resets, timeouts; never a caller's 4xx). */
export class UpstreamFault extends Error {
  readonly kind: 'connect' | 'reset' | 'timeout' | 'status' | 'malformed';
  readonly status: number | undefined;
  /**
   * A reset on a reused keep-alive socket the server had just closed: the request never ran, so
   * the adapter retries it on the same replica without spending an attempt.
   */
  staleSocket = false;
  constructor(kind: UpstreamFault['kind'], message: string, status?: number) {
    super(message);
    this.name = 'UpstreamFault';
    this.kind = kind;
    this.status = status;
  }
}

/** Replica first, as in the adapter's events. */
export interface BreakerEvents {
  state: [replica: string, state: BreakerState];
  failure: [replica: string, fault: UpstreamFault];
  reject: [replica: string];
}

/**
 * One replica's breaker: opossum underneath (rolling error rate, open, half-open after the
 * reset timeout, closed again by a successful probe), plus a consecutive-failure trip.
 */
export class ReplicaBreaker extends EventEmitter<BreakerEvents> {
  readonly replica: string;
  private readonly breaker: CircuitBreaker<[() => Promise<unknown>], unknown>;
  private readonly consecutiveLimit: number;
  private consecutive = 0;

  constructor(replica: string, input: BreakerOptions = {}) {
    super();
    const options = parseOptions(breakerOptionsSchema, input, 'ReplicaBreaker');
    this.replica = replica;
    this.consecutiveLimit = options.consecutiveFailures;
    this.breaker = new CircuitBreaker((attempt: () => Promise<unknown>) => attempt(), {
      // Timeouts are the adapter's: a stream may rightly run for minutes.
      timeout: false,
      resetTimeout: options.resetTimeoutMs,
      errorThresholdPercentage: options.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold,
      rollingCountTimeout: options.rollingWindowMs,
      rollingCountBuckets: 10,
      name: replica,
      // Only upstream faults count; anything else (the client left, a bug) is not the replica's fault.
      errorFilter: (err) => !(err instanceof UpstreamFault),
    });
    this.breaker.on('open', () => this.emit('state', replica, 'open'));
    this.breaker.on('halfOpen', () => this.emit('state', replica, 'halfOpen'));
    this.breaker.on('close', () => this.emit('state', replica, 'closed'));
    this.breaker.on('reject', () => this.emit('reject', replica));
    this.breaker.on('success', () => {
      this.consecutive = 0;
    });
    this.breaker.on('failure', (err: unknown) => {
      if (!(err instanceof UpstreamFault)) return;
      this.emit('failure', replica, err);
      if (++this.consecutive >= this.consecutiveLimit && !this.breaker.opened) this.breaker.open();
    });
  }

  get state(): BreakerState {
    return this.breaker.opened ? 'open' : this.breaker.halfOpen ? 'halfOpen' : 'closed';
  }

  /** True while the breaker admits a request: closed, or half-open with its probe slot free. */
  allowsRequest(): boolean {
    return this.breaker.closed || this.breaker.pendingClose;
  }

  /**
   * Runs one upstream attempt through the breaker. An `UpstreamFault` thrown by `attempt`
   * counts against the replica; when the breaker does not admit the call, it rejects with
   * an error for which `isRejection()` is true.
   */
  run<T>(attempt: () => Promise<T>): Promise<T> {
    return this.breaker.fire(attempt) as Promise<T>;
  }

  /** A fault found after `run` resolved (the stream broke mid-way). */
  recordFailure(fault: UpstreamFault): void {
    this.breaker.fire(() => Promise.reject(fault)).catch(() => undefined);
  }

  static isRejection(err: unknown): boolean {
    return CircuitBreaker.isOurError(err);
  }

  shutdown(): void {
    this.breaker.shutdown();
    this.removeAllListeners();
  }
}
