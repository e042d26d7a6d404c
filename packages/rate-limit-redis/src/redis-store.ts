import { randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { AcquireRequest, AcquireResult, Store } from '@tera-gw/rate-limit';
import { readyWaiter } from './connection.js';

// One atomic decision per call. Time comes from Redis (TIME), so hosts with skewed clocks agree.
// KEYS[1] bucket hash {tokens, ts}; KEYS[2] lease sorted set (score = expiry ms).
// ARGV: cost, concurrency, tokensPerSecond, burst, leaseTtlMs, leaseId.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost, concurrency, rate, burst, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local held = redis.call('ZCARD', KEYS[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) / 1000 * rate)
local idle = math.ceil((burst - math.min(tokens, burst)) / rate * 1000) + ttl
local function save()
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
  redis.call('PEXPIRE', KEYS[1], idle)
end
if held >= concurrency then
  save()
  return {0, 'concurrency', '1000', 0, tostring(tokens)}
end
if tokens <= 0 then
  save()
  return {0, 'tokens', tostring(-tokens / rate * 1000 + 1), concurrency - held, tostring(tokens)}
end
redis.call('ZADD', KEYS[2], now + ttl, ARGV[6])
redis.call('PEXPIRE', KEYS[2], ttl)
tokens = tokens - cost
save()
return {1, 'ok', '0', concurrency - held - 1, tostring(tokens)}
`;

// KEYS as above; ARGV: leaseId, adjust, tokensPerSecond, burst. Only a lease that still exists is corrected: release is idempotent.
const RELEASE = `
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local adjust, rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, math.min(burst, tokens + (now - ts) / 1000 * rate) - adjust)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
return 1
`;

type Scripted = Redis & {
  teraAcquire(bucket: string, leases: string, ...args: Array<string | number>): Promise<[number, string, string, number, string]>;
  teraRelease(bucket: string, leases: string, ...args: Array<string | number>): Promise<number>;
};

export interface RedisStoreOptions {
  /** An ioredis client of yours, or a URL (`redis://127.0.0.1:6379`). */
  client?: Redis;
  url?: string;
  redisOptions?: RedisOptions;
  /** @defaultValue `tera:rl:` */
  prefix?: string;
  /** While Redis is not connected, how long a decision waits for it before failing (then the limiter fails open or closed). @defaultValue 500 ms */
  connectWaitMs?: number;
}

/** Limiter state in Redis: every decision is one Lua script, atomic across all gateway hosts. */
export class RedisStore implements Store {
  private readonly redis: Scripted;
  private readonly prefix: string;
  private readonly owned: boolean;

  constructor(options: RedisStoreOptions) {
    if (!options.client && !options.url) throw new TypeError('RedisStore: give `client` or `url`');
    // Fail fast while Redis is down instead of queueing commands: the limiter decides per request what that means.
    const client =
      options.client ??
      new Redis(options.url!, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false, ...options.redisOptions });
    client.on('error', () => undefined);
    client.defineCommand('teraAcquire', { numberOfKeys: 2, lua: ACQUIRE });
    client.defineCommand('teraRelease', { numberOfKeys: 2, lua: RELEASE });
    this.redis = client as Scripted;
    this.owned = !options.client;
    this.prefix = options.prefix ?? 'tera:rl:';
    this.connected = readyWaiter(client, options.connectWaitMs ?? 500);
  }

  private readonly connected: () => Promise<void>;

  private keys(key: string): [string, string] {
    // The hash tag keeps both keys of one API key in one Redis Cluster slot.
    return [`${this.prefix}{${key}}:bucket`, `${this.prefix}{${key}}:leases`];
  }

  async acquire(key: string, r: AcquireRequest): Promise<AcquireResult> {
    await this.connected();
    const leaseId = randomUUID();
    const [bucket, leases] = this.keys(key);
    const [ok, reason, retry, remaining, tokensText] = await this.redis.teraAcquire(
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
    await this.connected();
    const [bucket, leases] = this.keys(key);
    await this.redis.teraRelease(bucket, leases, leaseId, adjust, r.tokensPerSecond, r.burst);
  }

  async close(): Promise<void> {
    if (this.owned) await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
