import { z } from 'zod';

export const reasoningOptionsSchema = z.strictObject({
  /**
   * The field the caller receives reasoning in: `reasoning` (vLLM 0.17+ and this gateway's
   * contract), `reasoning_content` (for clients ported from providers that use it), `both`
   * (same text in each), or `none` (hidden; its tokens still count in usage).
   * @defaultValue `'reasoning'`
   */
  output: z.enum(['reasoning', 'reasoning_content', 'both', 'none']).default('reasoning'),
  /**
   * What reasoning on assistant messages a client sends back becomes upstream: the field the
   * vLLM release reads (`reasoning` from 0.17 on, `reasoning_content` before), or `drop`.
   * @defaultValue `'reasoning'`
   */
  upstreamField: z.enum(['reasoning', 'reasoning_content', 'drop']).default('reasoning'),
});

export type ReasoningOptions = z.input<typeof reasoningOptionsSchema>;
