import { randomUUID } from 'node:crypto';
import { parseOptions } from '@tera-gw/core';
import type { BudgetAmounts, BudgetStore, ReserveRequest, ReserveResult } from '@tera-gw/rate-limit';
import { connect, connectionSchema, type Connection, type RedisConnectionOptions } from './connection.js';
import { RESERVE, SETTLE } from './scripts.js';

interface Commands {
  teraBudgetReserve(
    spent: string,
    holds: string,
    ...args: Array<string | number>
  ): Promise<[number, string, string, string, string, string]>;
  teraBudgetSettle(spent: string, holds: string, ...args: Array<string | number>): Promise<number>;
}

/** `{ client }` or `{ url, redisOptions }`, with `prefix` (@defaultValue `tera:budget:`), `connectWaitMs` and `logger`. */
export type RedisBudgetStoreOptions = RedisConnectionOptions;

/** Spend budgets in Redis: every decision is one Lua script, so several gateway hosts spend one budget. */
export class RedisBudgetStore implements BudgetStore {
  private readonly connection: Connection<Commands>;
  private readonly prefix: string;

  constructor(input: RedisBudgetStoreOptions) {
    const options = parseOptions(connectionSchema, input, 'RedisBudgetStore');
    this.connection = connect<Commands>(
      options,
      { teraBudgetReserve: { keys: 2, lua: RESERVE }, teraBudgetSettle: { keys: 2, lua: SETTLE } },
      'RedisBudgetStore',
    );
    this.prefix = options.prefix ?? 'tera:budget:';
  }

  private keys(keyId: string, period: string): [string, string] {
    // The hash tag keeps one key's budget in one Redis Cluster slot.
    return [`${this.prefix}{${keyId}}:${period}:spent`, `${this.prefix}{${keyId}}:${period}:holds`];
  }

  async reserve(keyId: string, r: ReserveRequest): Promise<ReserveResult> {
    await this.connection.ready();
    const holdId = randomUUID();
    const [spent, holds] = this.keys(keyId, r.period);
    const [ok, reason, spentUsd, spentTokens, heldUsd, heldTokens] = await this.connection.redis.teraBudgetReserve(
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
    await this.connection.ready();
    const [spent, holds] = this.keys(keyId, period);
    await this.connection.redis.teraBudgetSettle(spent, holds, holdId, actual.usd.toFixed(12), actual.tokens);
  }

  close(): Promise<void> {
    return this.connection.close();
  }

  ping(): Promise<void> {
    return this.connection.ping();
  }
}
