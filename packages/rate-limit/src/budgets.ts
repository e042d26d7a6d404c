import './context.js';
import type { ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import {
  PRICE_PER_MILLION,
  TeraError,
  consoleLogger,
  context,
  outputTokensCap,
  parseOptions,
  promptTokensBound,
  recordEvent,
  serviceUnavailable,
  throttled,
  type Middleware,
  type RequestContext,
} from '@tera-gw/core';
import { budgetOptionsSchema, type BudgetOptions } from './options.js';

/** A key's spend budget, from its record (`budget` in the keys file or `auth.keys`). Calendar periods are UTC. */
export interface Budget {
  usd?: number;
  tokens?: number;
  period: 'day' | 'week' | 'month' | 'total';
}

export interface BudgetAmounts {
  usd: number;
  tokens: number;
}

export interface ReserveRequest {
  /** The period's id, e.g. `day:2026-11-28`: each period spends its own budget. */
  period: string;
  limits: { usd?: number | undefined; tokens?: number | undefined };
  /** What this request may cost at most: held until it settles. */
  hold: BudgetAmounts;
  /** A hold not settled within this long is dropped (its gateway process died). */
  holdTtlMs: number;
  /**
   * How long from now the period's state must be kept (until its end, plus a day); undefined:
   * forever. A duration, not a date: the store applies it on its own clock, so a store whose clock
   * differs from the middleware's (another host, Redis's TIME, a test's fake clock) still keeps a
   * period exactly as long as it lasts.
   */
  keepForMs: number | undefined;
}

export type ReserveResult =
  | { ok: true; holdId: string; spent: BudgetAmounts; held: BudgetAmounts }
  | { ok: false; exceeded: 'usd' | 'tokens'; spent: BudgetAmounts; held: BudgetAmounts };

/**
 * Where budgets are kept; each call is one atomic decision, so gateway hosts sharing a store
 * spend one budget (see `RedisBudgetStore` in `@tera-gw/rate-limit-redis`).
 */
export interface BudgetStore {
  /** Admits when, for every limit, spent + held is still under it; then holds `hold`. */
  reserve(keyId: string, request: ReserveRequest): Promise<ReserveResult>;
  /** Drops the hold and adds what the request really cost. Idempotent per hold. */
  settle(keyId: string, period: string, holdId: string, actual: BudgetAmounts): Promise<void>;
  close?(): Promise<void>;
  /** Resolves when the store answers (the gateway's readiness probe asks); absent for a store in memory. */
  ping?(): Promise<void>;
}

interface PeriodState {
  spent: BudgetAmounts;
  holds: Map<string, BudgetAmounts & { expiresAt: number }>;
  forgetAtMs: number | undefined;
}

/** Budgets in this process's memory: one gateway host. */
export class MemoryBudgetStore implements BudgetStore {
  private readonly periods = new Map<string, PeriodState>();

  constructor(private readonly now: () => number = Date.now) {}

  private state(keyId: string, period: string, keepForMs: number | undefined, now: number): PeriodState {
    const id = `${keyId}\u0000${period}`;
    let state = this.periods.get(id);
    if (!state) {
      state = { spent: { usd: 0, tokens: 0 }, holds: new Map(), forgetAtMs: keepForMs === undefined ? undefined : now + keepForMs };
      // Periods that ended are forgotten as new ones begin.
      for (const [other, s] of this.periods) if (s.forgetAtMs !== undefined && s.forgetAtMs < now) this.periods.delete(other);
      this.periods.set(id, state);
    }
    return state;
  }

  reserve(keyId: string, r: ReserveRequest): Promise<ReserveResult> {
    const now = this.now();
    const state = this.state(keyId, r.period, r.keepForMs, now);
    const held = { usd: 0, tokens: 0 };
    for (const [id, hold] of state.holds) {
      if (hold.expiresAt <= now) state.holds.delete(id);
      else {
        held.usd += hold.usd;
        held.tokens += hold.tokens;
      }
    }
    const spent = { ...state.spent };
    if (r.limits.usd !== undefined && spent.usd + held.usd >= r.limits.usd)
      return Promise.resolve({ ok: false, exceeded: 'usd', spent, held });
    if (r.limits.tokens !== undefined && spent.tokens + held.tokens >= r.limits.tokens)
      return Promise.resolve({ ok: false, exceeded: 'tokens', spent, held });
    const holdId = randomUUID();
    state.holds.set(holdId, { ...r.hold, expiresAt: now + r.holdTtlMs });
    return Promise.resolve({ ok: true, holdId, spent, held: { usd: held.usd + r.hold.usd, tokens: held.tokens + r.hold.tokens } });
  }

  settle(keyId: string, period: string, holdId: string, actual: BudgetAmounts): Promise<void> {
    const state = this.periods.get(`${keyId}\u0000${period}`);
    if (state?.holds.delete(holdId)) {
      state.spent.usd += actual.usd;
      state.spent.tokens += actual.tokens;
    }
    return Promise.resolve();
  }
}

const DAY = 86_400_000;
const iso = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** The budget period containing `now` (UTC): its id, and when it ends (undefined for `total`). */
export function budgetPeriod(period: Budget['period'], now: number): { id: string; endsAt: number | undefined } {
  const d = new Date(now);
  const midnight = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  switch (period) {
    case 'day':
      return { id: `day:${iso(midnight)}`, endsAt: midnight + DAY };
    case 'week': {
      // ISO weeks start on Monday.
      const monday = midnight - ((d.getUTCDay() + 6) % 7) * DAY;
      return { id: `week:${iso(monday)}`, endsAt: monday + 7 * DAY };
    }
    case 'month':
      return {
        id: `month:${iso(midnight).slice(0, 7)}`,
        endsAt: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1),
      };
    case 'total':
      return { id: 'total', endsAt: undefined };
  }
}

const PERIOD_WORDS: Record<Budget['period'], string> = { day: 'daily', week: 'weekly', month: 'monthly', total: 'total' };
const money = (usd: number) => `$${usd.toFixed(usd < 1 ? 4 : 2)}`;

function budgetExceeded(budget: Budget, exceeded: 'usd' | 'tokens', endsAt: number | undefined, now: number): TeraError {
  const limit = exceeded === 'usd' ? money(budget.usd!) : `${budget.tokens!} tokens`;
  const when = endsAt === undefined ? 'It does not reset; ask for a larger budget.' : `It resets at ${new Date(endsAt).toISOString()}.`;
  const headers: Record<string, string> = {};
  if (endsAt !== undefined) headers['Retry-After'] = String(Math.max(1, Math.ceil((endsAt - now) / 1000)));
  return new TeraError(429, 'insufficient_quota', `This API key has used its ${PERIOD_WORDS[budget.period]} budget of ${limit}. ${when}`, {
    code: 'budget_exceeded',
    headers,
  });
}

function setRemaining(ctx: RequestContext, res: ServerResponse, budget: Budget, spent: BudgetAmounts, held: BudgetAmounts): void {
  ctx.budgetRemaining = {
    ...(budget.usd !== undefined ? { usd: Math.max(0, budget.usd - spent.usd - held.usd) } : {}),
    ...(budget.tokens !== undefined ? { tokens: Math.max(0, budget.tokens - spent.tokens - held.tokens) } : {}),
  };
  if (res.headersSent) return;
  if (budget.usd !== undefined)
    res.setHeader(
      'x-tera-budget-remaining-usd',
      Math.max(0, budget.usd - spent.usd - held.usd)
        .toFixed(6)
        .replace(/\.?0+$/, ''),
    );
  if (budget.tokens !== undefined)
    res.setHeader('x-tera-budget-remaining-tokens', String(Math.max(0, Math.floor(budget.tokens - spent.tokens - held.tokens))));
}

/** What a request costs, in USD and tokens, at the given prices. */
export function usageCost(prompt: number, completion: number, prices: { input: number; output: number }): BudgetAmounts {
  return { usd: (prompt * prices.input + completion * prices.output) / 1e6, tokens: prompt + completion };
}

/**
 * Per key with a `budget`: refused once the period's budget is spent (429 `insufficient_quota`,
 * `code: budget_exceeded`, `Retry-After` until the period resets). While a request runs its
 * possible cost (prompt plus output reservation) is held, so parallel requests overshoot by at
 * most one request's cost; when it ends, the real cost (from the upstream's usage, aborted
 * streams included) settles. Keys without a budget pass untouched.
 */
export function budgets(input: BudgetOptions = {}): Middleware {
  const options = parseOptions(budgetOptionsSchema, input, 'budgets()');
  const { now, holdTtlMs } = options;
  const store = options.store ?? new MemoryBudgetStore(now);
  const prices = options.prices ?? PRICE_PER_MILLION;
  const reservation = options.outputReservation;
  const failOpen = options.onStoreError === 'open';
  const log = throttled(options.logger ?? consoleLogger());

  const actualCost = (ctx: RequestContext): BudgetAmounts =>
    ctx.usage ? usageCost(ctx.usage.prompt_tokens, ctx.usage.completion_tokens, prices) : { usd: 0, tokens: 0 };

  return function budget(req, res, next) {
    const ctx = context(req, res);
    const key = ctx.key;
    const limits = key?.budget;
    if (!key || !limits || (limits.usd === undefined && limits.tokens === undefined)) return next();
    const at = now();
    const period = budgetPeriod(limits.period, at);
    // What the request can cost at most, as the replica will see it.
    const prompt = promptTokensBound(ctx);
    const output = outputTokensCap(ctx, reservation);
    const request: ReserveRequest = {
      period: period.id,
      limits: { usd: limits.usd, tokens: limits.tokens },
      hold: usageCost(prompt, output, prices),
      holdTtlMs,
      keepForMs: period.endsAt === undefined ? undefined : period.endsAt + DAY - at,
    };
    store.reserve(key.id, request).then(
      (result) => {
        // What is left before this request: spent and what others hold (this request's own hold is not spent yet).
        const others = result.ok
          ? { usd: result.held.usd - request.hold.usd, tokens: result.held.tokens - request.hold.tokens }
          : result.held;
        setRemaining(ctx, res, limits, result.spent, others);
        if (!result.ok) {
          recordEvent(ctx, 'tera.budget.exceeded', { 'tera.budget.period': period.id, 'tera.budget.exceeded': result.exceeded });
          return next(budgetExceeded(limits, result.exceeded, period.endsAt, at));
        }
        ctx.cleanups.push(() => {
          store
            .settle(key.id, period.id, result.holdId, actualCost(ctx))
            .catch((err: unknown) => log.warn({ err, keyId: key.id }, "budgets: settling a request's cost failed"));
        });
        next();
      },
      (err: unknown) => {
        log.error({ err }, `budgets: the store failed; ${failOpen ? 'admitting' : 'refusing'} requests`);
        if (failOpen) return next();
        next(serviceUnavailable('The budget store is unavailable; retry shortly.', 1, 'budget_store_unavailable'));
      },
    );
  };
}
