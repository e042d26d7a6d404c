import { randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { readyWaiter } from './connection.js';
import type { BudgetAmounts, BudgetStore, ReserveRequest, ReserveResult } from '@tera-gw/rate-limit';

// One atomic decision per call; time from Redis (TIME), so hosts with skewed clocks agree on hold expiry.
// KEYS[1] spent hash {usd, tokens}; KEYS[2] holds hash {holdId: "usd tokens expiresAtMs"}.
// ARGV: limitUsd ('' for none), limitTokens ('' for none), holdUsd, holdTokens, holdTtlMs, holdId, keepForMs ('' for ever).
const RESERVE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local spentUsd = tonumber(redis.call('HGET', KEYS[1], 'usd')) or 0
local spentTokens = tonumber(redis.call('HGET', KEYS[1], 'tokens')) or 0
local heldUsd, heldTokens = 0, 0
local holds = redis.call('HGETALL', KEYS[2])
for i = 1, #holds, 2 do
  local usd, tokens, expires = string.match(holds[i + 1], '(%S+) (%S+) (%S+)')
  if tonumber(expires) <= now then
    redis.call('HDEL', KEYS[2], holds[i])
  else
    heldUsd = heldUsd + tonumber(usd)
    heldTokens = heldTokens + tonumber(tokens)
  end
end
local state = {tostring(spentUsd), tostring(spentTokens), tostring(heldUsd), tostring(heldTokens)}
if ARGV[1] ~= '' and spentUsd + heldUsd >= tonumber(ARGV[1]) then return {0, 'usd', unpack(state)} end
if ARGV[2] ~= '' and spentTokens + heldTokens >= tonumber(ARGV[2]) then return {0, 'tokens', unpack(state)} end
redis.call('HSET', KEYS[2], ARGV[6], ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. tostring(now + tonumber(ARGV[5])))
if ARGV[7] ~= '' then
  -- The spent hash must exist for its TTL to hold: settle only increments it.
  redis.call('HSETNX', KEYS[1], 'usd', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
state[3] = tostring(heldUsd + tonumber(ARGV[3]))
state[4] = tostring(heldTokens + tonumber(ARGV[4]))
return {1, 'ok', unpack(state)}
`;

// KEYS as above; ARGV: holdId, usd, tokens. Only a hold that still exists settles: idempotent.
const SETTLE = `
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBYFLOAT', KEYS[1], 'usd', ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[1], 'tokens', ARGV[3])
return 1
`;

type Scripted = Redis & {
  teraBudgetReserve(
    spent: string,
    holds: string,
    ...args: Array<string | number>
  ): Promise<[number, string, string, string, string, string]>;
  teraBudgetSettle(spent: string, holds: string, ...args: Array<string | number>): Promise<number>;
};

export interface RedisBudgetStoreOptions {
  /** An ioredis client of yours, or a URL (`redis://127.0.0.1:6379`). */
  client?: Redis;
  url?: string;
  redisOptions?: RedisOptions;
  /** @defaultValue `tera:budget:` */
  prefix?: string;
  /** While Redis is not connected, how long a decision waits for it before failing. @defaultValue 500 ms */
  connectWaitMs?: number;
}

/** Spend budgets in Redis: every decision is one Lua script, so several gateway hosts spend one budget. */
export class RedisBudgetStore implements BudgetStore {
  private readonly redis: Scripted;
  private readonly prefix: string;
  private readonly owned: boolean;

  constructor(options: RedisBudgetStoreOptions) {
    if (!options.client && !options.url) throw new TypeError('RedisBudgetStore: give `client` or `url`');
    const client =
      options.client ??
      new Redis(options.url!, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false, ...options.redisOptions });
    client.on('error', () => undefined);
    client.defineCommand('teraBudgetReserve', { numberOfKeys: 2, lua: RESERVE });
    client.defineCommand('teraBudgetSettle', { numberOfKeys: 2, lua: SETTLE });
    this.redis = client as Scripted;
    this.owned = !options.client;
    this.prefix = options.prefix ?? 'tera:budget:';
    this.connected = readyWaiter(client, options.connectWaitMs ?? 500);
  }

  private readonly connected: () => Promise<void>;

  private keys(keyId: string, period: string): [string, string] {
    // The hash tag keeps one key's budget in one Redis Cluster slot.
    return [`${this.prefix}{${keyId}}:${period}:spent`, `${this.prefix}{${keyId}}:${period}:holds`];
  }

  async reserve(keyId: string, r: ReserveRequest): Promise<ReserveResult> {
    await this.connected();
    const holdId = randomUUID();
    const [spent, holds] = this.keys(keyId, r.period);
    const [ok, reason, spentUsd, spentTokens, heldUsd, heldTokens] = await this.redis.teraBudgetReserve(
      spent,
      holds,
      r.limits.usd ?? '',
      r.limits.tokens ?? '',
      // Fixed notation: Lua and HINCRBYFLOAT read it whatever the magnitude.
      r.hold.usd.toFixed(12),
      r.hold.tokens,
      r.holdTtlMs,
      holdId,
      r.keepForMs === undefined ? '' : Math.max(1, Math.ceil(r.keepForMs)),
    );
    const state = {
      spent: { usd: Number(spentUsd), tokens: Number(spentTokens) },
      held: { usd: Number(heldUsd), tokens: Number(heldTokens) },
    };
    return ok === 1 ? { ok: true, holdId, ...state } : { ok: false, exceeded: reason as 'usd' | 'tokens', ...state };
  }

  async settle(keyId: string, period: string, holdId: string, actual: BudgetAmounts): Promise<void> {
    await this.connected();
    const [spent, holds] = this.keys(keyId, period);
    await this.redis.teraBudgetSettle(spent, holds, holdId, actual.usd.toFixed(12), actual.tokens);
  }

  async close(): Promise<void> {
    if (this.owned) await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
