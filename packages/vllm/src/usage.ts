import {
  countPromptTokens,
  countTextTokens,
  estimatedPromptTokens,
  tokenizerLoaded,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  type RequestContext,
  type Usage,
} from '@tera-gw/core';

type WithReasoning = { reasoning?: string | null; reasoning_content?: string | null };

/** Tokens of a piece of reasoning text: exact once the tokenizer is loaded (the adapter loads it at start), else about 4 characters a token. */
const tokensOf = (text: string) => (tokenizerLoaded() ? countTextTokens(text) : Math.ceil(text.length / 4));

/**
 * The usage of one response as the caller and the bill see it. vLLM reports tokens but often
 * not how many were reasoning: those are counted from the reasoning text (OpenAI's
 * `completion_tokens_details.reasoning_tokens`, read by LangChain and the AI SDK). Streams ask
 * vLLM for `continuous_usage_stats`, so the usage of the last chunk relayed is what the
 * replica had generated when a client left or the stream broke.
 */
export class UsageMeter {
  private reasoningTokens = 0;

  /** An upstream chunk, before the transforms: counts its reasoning. */
  observeChunk(chunk: ChatCompletionChunk): void {
    for (const choice of chunk.choices) {
      const delta = choice.delta as WithReasoning;
      const text = delta.reasoning ?? delta.reasoning_content;
      if (text) this.reasoningTokens += tokensOf(text);
    }
  }

  observeCompletion(completion: ChatCompletion): void {
    for (const choice of completion.choices) {
      const message = choice.message as WithReasoning;
      const text = message.reasoning ?? message.reasoning_content;
      if (text) this.reasoningTokens += tokensOf(text);
    }
    if (completion.usage) this.complete(completion.usage);
  }

  /**
   * Adds the reasoning count to a usage vLLM reported without one. Called on the final usage
   * chunk and once when a stream ends any other way (not on every chunk's continuous usage).
   */
  complete(usage: Usage): void {
    if (usage.completion_tokens_details?.reasoning_tokens != null) return;
    usage.completion_tokens_details = {
      ...usage.completion_tokens_details,
      reasoning_tokens: Math.min(this.reasoningTokens, usage.completion_tokens),
    };
  }
}

/**
 * The client left. With usage from the replica (a stream past its first chunk), that is the
 * bill; before any, the prompt was still prefilled: it is billed from the gateway's own count,
 * which the cleanups (limiter, usage record) wait for.
 */
export function settleAbortedUsage(ctx: RequestContext, body: ChatCompletionRequest, streamStarted: boolean): void {
  ctx.abortReason = !body.stream
    ? 'client_closed_before_answer'
    : streamStarted
      ? 'client_closed_mid_stream'
      : 'client_closed_before_first_token';
  if (ctx.usage) return;
  const bill = (prompt: number) => {
    ctx.usage ??= { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt };
  };
  if (ctx.promptTokens !== undefined) return bill(ctx.promptTokens);
  ctx.usagePending = countPromptTokens(body).then(bill, () => bill(estimatedPromptTokens(ctx)));
}
