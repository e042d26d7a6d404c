import { CONTEXT_LENGTH, MAX_OUTPUT_TOKENS } from './schema.js';

export interface ModelInfo {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  /** Context window in tokens (prompt + output); vLLM calls it `max_model_len`. */
  context_length: number;
  max_model_len: number;
  max_output_tokens: number;
  quantization: string;
  prefix_caching: boolean;
  /** USD per token, as strings to keep the exact decimal. Reasoning tokens are billed as output. */
  pricing: { prompt: string; completion: string; unit: 'USD per token' };
}

export const GPT_OSS_20B = 'openai/gpt-oss-20b';

/** USD per million tokens (PROTOCOL.md). */
export const PRICE_PER_MILLION = { input: 0.07, output: 0.25 } as const;

export const GPT_OSS_20B_INFO: ModelInfo = {
  id: GPT_OSS_20B,
  object: 'model',
  // 2025-08-05, gpt-oss's release.
  created: 1_754_352_000,
  owned_by: 'openai',
  context_length: CONTEXT_LENGTH,
  max_model_len: CONTEXT_LENGTH,
  max_output_tokens: MAX_OUTPUT_TOKENS,
  quantization: 'mxfp4',
  prefix_caching: true,
  pricing: { prompt: '0.00000007', completion: '0.00000025', unit: 'USD per token' },
};

/** Cost in USD of a request's usage at the model's prices (USD per million input / output tokens; reasoning is output). */
export function costUSD(
  usage: { prompt_tokens: number; completion_tokens: number },
  prices: { readonly input: number; readonly output: number } = PRICE_PER_MILLION,
): number {
  return (usage.prompt_tokens * prices.input + usage.completion_tokens * prices.output) / 1e6;
}
