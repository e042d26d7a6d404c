import { randomUUID } from 'node:crypto';
import { parseOptions } from '@tera-gw/core';
import type { AcquireRequest, AcquireResult, Store } from '@tera-gw/rate-limit';
import { connect, connectionSchema, type Connection, type RedisConnectionOptions } from './connection.js';
import { ACQUIRE, RELEASE } from './scripts.js';

interface Commands {
  teraAcquire(bucket: string, leases: string, ...args: Array<string | number>): Promise<[number, string, string, number, string]>;
  teraRelease(bucket: string, leases: string, ...args: Array<string | number>): Promise<number>;
}

/** `{ client }` or `{ url, redisOptions }`, with `prefix` (@defaultValue `tera:rl:`), `connectWaitMs` and `logger`. */
export type RedisStoreOptions = RedisConnectionOptions;

/** Limiter state in Redis: every decision is one Lua script, atomic across all gateway hosts. */
export class RedisStore implements Store {
  private readonly connection: Connection<Commands>;
  private readonly prefix: string;

  constructor(input: RedisStoreOptions) {
    const options = parseOptions(connectionSchema, input, 'RedisStore');
    this.connection = connect<Commands>(
      options,
      { teraAcquire: { keys: 2, lua: ACQUIRE }, teraRelease: { keys: 2, lua: RELEASE } },
      'RedisStore',
    );
    this.prefix = options.prefix ?? 'tera:rl:';
  }

  private keys(key: string): [string, string] {
    // The hash tag keeps both keys of one API key in one Redis Cluster slot.
    return [`${this.prefix}{${key}}:bucket`, `${this.prefix}{${key}}:leases`];
  }

  async acquire(key: string, r: AcquireRequest): Promise<AcquireResult> {
    await this.connection.ready();
    const leaseId = randomUUID();
    const [bucket, leases] = this.keys(key);
    const [ok, reason, retry, remaining, tokensText] = await this.connection.redis.teraAcquire(
      bucket,
      leases,
      r.cost,
      r.concurrency,
      r.tokensPerSecond,
      r.burst,
      r.leaseTtlMs,
      leaseId,
    );
    const tokens = Number(tokensText);
    const state = {
      remainingRequests: Number(remaining),
      remainingTokens: tokens,
      resetTokensMs: ((r.burst - tokens) / r.tokensPerSecond) * 1000,
    };
    if (ok === 1) return { ok: true, leaseId, ...state };
    return { ok: false, reason: reason as 'concurrency' | 'tokens', retryAfterMs: Number(retry), ...state };
  }

  async release(key: string, leaseId: string, adjust: number, r: Pick<AcquireRequest, 'tokensPerSecond' | 'burst'>): Promise<void> {
    await this.connection.ready();
    const [bucket, leases] = this.keys(key);
    await this.connection.redis.teraRelease(bucket, leases, leaseId, adjust, r.tokensPerSecond, r.burst);
  }

  close(): Promise<void> {
    return this.connection.close();
  }

  ping(): Promise<void> {
    return this.connection.ping();
  }
}
