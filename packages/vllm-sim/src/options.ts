export type ReasoningField = 'reasoning' | 'reasoning_content' | 'both';

/**
 * Output shapes that released vLLM versions showed: tool-call stream quirks, and gpt-oss
 * Harmony leaks in their exact byte forms (PROTOCOL.md, "Harmony leaks").
 */
export type ToolCallQuirk =
  | 'single-delta'
  | 'repeat-name'
  | 'stop-finish'
  | 'harmony-tool-name'
  | 'harmony-constrain-name'
  | 'harmony-recipient'
  | 'harmony-tool-in-content'
  | 'harmony-tool-in-content-plain'
  | 'harmony-analysis-in-content'
  | 'harmony-analysis-in-content-plain'
  | 'ids-skip-empty';
export const TOOL_CALL_QUIRKS: readonly ToolCallQuirk[] = [
  'single-delta',
  'repeat-name',
  'stop-finish',
  'harmony-tool-name',
  'harmony-constrain-name',
  'harmony-recipient',
  'harmony-tool-in-content',
  'harmony-tool-in-content-plain',
  'harmony-analysis-in-content',
  'harmony-analysis-in-content-plain',
  // vLLM before its fix of `return_token_ids` with tool parsers (issue 27482): a chunk whose delta came out empty was not sent, nor its ids.
  'ids-skip-empty',
];

/**
 * Failures to drive the gateway with. Replica faults: `500` (the engine died), `503`, resets,
 * stalls, broken SSE. gpt-oss output failures as released vLLM versions show them (they depend
 * on sampling, so a retry usually succeeds): a Harmony parser error as a 500, a 400, a 200 whose
 * body is an error object, or an SSE error event before or after the first text; an empty
 * completion (vllm#41902); JSON that breaks the request's schema, or text that is no JSON at all.
 * `request-500`: vLLM's JSON 500 for an exception raised while handling this one request.
 */
export const FAULTS = [
  '500',
  '503',
  'reset-before-headers',
  'drop-mid-stream',
  'stall',
  'malformed-sse',
  'harmony-500',
  'harmony-400',
  'harmony-200',
  'harmony-sse-before-text',
  'harmony-sse-after-text',
  'empty-completion',
  'schema-break',
  'invalid-json',
  'request-500',
] as const;
export type Fault = (typeof FAULTS)[number];

export interface SimulatorOptions {
  /** @defaultValue 0 (any free port) */
  port?: number;
  /** @defaultValue `127.0.0.1` */
  host?: string;
  /** @defaultValue `openai/gpt-oss-20b` */
  model?: string;
  /** @defaultValue 131072 */
  maxModelLen?: number;
  /** Older vLLM releases send `reasoning_content`, 0.17 and later `reasoning`. @defaultValue `reasoning` */
  reasoningField?: ReasoningField;
  /** Time to first token. @defaultValue 0 */
  ttftMs?: number;
  /** Time between tokens. @defaultValue 0 */
  itlMs?: number;
  /** Extra delay of the first request after start (CUDA graph compilation). @defaultValue 0 */
  coldStartMs?: number;
  /** Share of chat requests answered 500. @defaultValue 0 */
  failRate?: number;
  /** Share of chat requests that meet each fault, e.g. `{ 'harmony-500': 0.2 }` (`--fault harmony-500:0.2`). */
  faultRates?: Partial<Record<Fault, number>>;
  /** Faults meet only the first N attempts of each gateway request (by `x-request-id`): a retry then succeeds. @defaultValue every attempt */
  faultTimes?: number;
  toolCallQuirks?: readonly ToolCallQuirk[];
  /** Errors as older releases sent them (`{"object":"error",...}`) or nested (`{"error":{...}}`). @defaultValue `nested` */
  errorFormat?: 'flat' | 'nested';
  /** KV cache of this many tokens, in blocks of 16, least recently used out first. @defaultValue 262144 */
  kvCacheTokens?: number;
  /** Prefill time per prompt token not served from the prefix cache. @defaultValue 0 */
  prefillUsPerToken?: number;
  /** Requests in the running batch; the rest wait in a queue. @defaultValue 256 */
  maxNumSeqs?: number;
  /** Add `prompt_tokens_details.cached_tokens` to usage, as vLLM's `--enable-prompt-tokens-details` does. @defaultValue false */
  enablePromptTokensDetails?: boolean;
  /** Reported by `/version`. @defaultValue `0.17.1`, or `0.10.2` with `reasoningField: 'reasoning_content'` */
  version?: string;
}

/** What can change while the simulator runs (`configure()` or `POST /sim/config`), for failure drills. */
export interface RuntimeConfig {
  failRate?: number;
  /** Replaces the fault rates. */
  faultRates?: Partial<Record<Fault, number>>;
  faultTimes?: number;
  /** `/health` answers 503 while false. */
  healthy?: boolean;
  /** The next request pays the cold start again, as after a restart. */
  cold?: boolean;
  ttftMs?: number;
  itlMs?: number;
  /**
   * The next `times` chat streams (1 by default) die after `tokens` generated tokens: the
   * connection resets (`connection`, the default) or the process exits (`process`), as an
   * out-of-memory kill or a lost node ends a replica mid-stream. `null` disarms.
   */
  dieAfterTokens?: { tokens: number; mode?: 'connection' | 'process'; times?: number } | null;
}
