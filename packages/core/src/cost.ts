import type { RequestContext } from './context.js';

/*
 * What a request may cost, in tokens, before the upstream says: one reading for the limiter,
 * budgets and admission. A token is at least one UTF-8 byte, so the bytes the replica will read
 * (stored items expanded) bound the prompt until it is counted; about four bytes a token is what
 * ordinary text costs.
 */

/** Prompt tokens at most: the exact count when validation made one, else the request's bytes. */
export function promptTokensBound(ctx: RequestContext): number {
  return ctx.promptTokens ?? ctx.promptTokenEstimate ?? 0;
}

/** Prompt tokens to expect: the exact count when validation made one, else a quarter of the bytes. */
export function estimatedPromptTokens(ctx: RequestContext): number {
  return ctx.promptTokens ?? Math.ceil((ctx.promptTokenEstimate ?? 0) / 4);
}

/** Output tokens the request may generate: its `max_completion_tokens` or `max_tokens`, else `fallback`. */
export function outputTokensCap(ctx: RequestContext, fallback: number): number {
  return ctx.body?.max_completion_tokens ?? ctx.body?.max_tokens ?? fallback;
}
