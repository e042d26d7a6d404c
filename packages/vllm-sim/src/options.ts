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
  | 'harmony-analysis-in-content-plain';
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
];

export type Fault = '500' | '503' | 'reset-before-headers' | 'drop-mid-stream' | 'stall' | 'malformed-sse';
export const FAULTS: readonly Fault[] = ['500', '503', 'reset-before-headers', 'drop-mid-stream', 'stall', 'malformed-sse'];

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
  /** `/health` answers 503 while false. */
  healthy?: boolean;
  /** The next request pays the cold start again, as after a restart. */
  cold?: boolean;
  ttftMs?: number;
  itlMs?: number;
}
